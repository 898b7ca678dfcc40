// Yosys techmap: replace each $mem_v2 (left by `memory -nomap`) by the array of OpenRAM
// macros it stands for (sky130_sram_1kbyte_1rw1r_32x256_8: 256 words x 32 bits), as zero-area
// timing stubs, so that memories never become flip-flops. A memory of SIZE words and WIDTH
// bits is NB = ceil(SIZE/256) banks of NC = ceil(WIDTH/32) macros. Per macro and port,
// spk_sram_d stubs capture its address bits (the low 8) and write enable, a spk_sram_cs stub
// its chip select and clock pin; per bank, spk_sram_q stubs launch its read-data bits and
// spk_sram_d stubs capture its write data. The logic a macro array needs is real logic
// here and is synthesised with the design: each bank's chip select (the port's enable and
// the address's upper bits), and on a read port a bank-select register and the multiplexer
// that picks the addressed bank's word. Each stub pin has the macro pin's capacitance
// (sram_stub.liberty), so an address net carries the load of every macro it reaches. SRAM
// area and energy are added from hw/sram_model.py; the stubs give STA the memory boundary.
(* techmap_celltype = "$mem_v2" *)
module _spk_sram_stub (RD_CLK, RD_EN, RD_ARST, RD_SRST, RD_ADDR, RD_DATA,
                       WR_CLK, WR_EN, WR_ADDR, WR_DATA);
    parameter MEMID = "";
    parameter signed SIZE = 4;
    parameter signed OFFSET = 0;
    parameter signed ABITS = 2;
    parameter signed WIDTH = 8;
    parameter signed INIT = 1'bx;
    parameter signed RD_PORTS = 1;
    parameter RD_CLK_ENABLE = 1'b1;
    parameter RD_CLK_POLARITY = 1'b1;
    parameter RD_TRANSPARENCY_MASK = 1'b0;
    parameter RD_COLLISION_X_MASK = 1'b0;
    parameter RD_WIDE_CONTINUATION = 1'b0;
    parameter RD_CE_OVER_SRST = 1'b0;
    parameter RD_ARST_VALUE = 1'b0;
    parameter RD_SRST_VALUE = 1'b0;
    parameter RD_INIT_VALUE = 1'b0;
    parameter signed WR_PORTS = 1;
    parameter WR_CLK_ENABLE = 1'b1;
    parameter WR_CLK_POLARITY = 1'b1;
    parameter WR_PRIORITY_MASK = 1'b0;
    parameter WR_WIDE_CONTINUATION = 1'b0;

    localparam RP = RD_PORTS > 0 ? RD_PORTS : 1;
    localparam WP = WR_PORTS > 0 ? WR_PORTS : 1;
    input [RP-1:0] RD_CLK;
    input [RP-1:0] RD_EN;
    input [RP-1:0] RD_ARST;
    input [RP-1:0] RD_SRST;
    input [RP*ABITS-1:0] RD_ADDR;
    output [RP*WIDTH-1:0] RD_DATA;
    input [WP-1:0] WR_CLK;
    input [WP*WIDTH-1:0] WR_EN;
    input [WP*ABITS-1:0] WR_ADDR;
    input [WP*WIDTH-1:0] WR_DATA;

    localparam MA = ABITS < 8 ? ABITS : 8;        // address bits a macro takes
    localparam SB = ABITS > 8 ? ABITS - 8 : 0;    // bank-select bits above them
    localparam NB = (SIZE + 255) / 256;           // banks of 256 words
    localparam NC = (WIDTH + 31) / 32;            // 32-bit macros side by side in a bank
    localparam GROUP = 8;                         // banks behind one buffer of a tree
    localparam NG = (NB + GROUP - 1) / GROUP;

    // Address and write-data nets reach every bank through a two-level tree (a group of 8
    // banks, then each bank) of spk_sram_buf and spk_sram_and cells, which the flow turns
    // into sky130 cells after ABC: ABC sees one output per net and never the macros' pins
    // behind it. A read port's tree is an AND tree: each level passes the address only to
    // the group and the bank the port reads (its chip select), so a read toggles one bank's
    // address pins, not every bank's (the other banks ignore them anyway).
    genvar p, g, b, c, i;
    generate
        for (p = 0; p < RD_PORTS; p = p + 1) begin : rd
            wire [NB*WIDTH-1:0] bank_q;
            wire [NG*MA-1:0] group_addr;
            for (g = 0; g < NG; g = g + 1) begin : group
                wire ge, ge_pin;
                if (NG == 1) begin : all
                    assign ge = RD_EN[p];
                end else begin : decode
                    assign ge = RD_EN[p] & (RD_ADDR[p*ABITS+MA+3 +: (SB > 3 ? SB - 3 : 1)] == g);
                end
                spk_sram_buf gebuf (.A(ge), .X(ge_pin));
                for (i = 0; i < MA; i = i + 1) begin : abuf
                    spk_sram_and drv (.A(RD_ADDR[p*ABITS+i]), .B(ge_pin), .X(group_addr[g*MA+i]));
                end
            end
            for (b = 0; b < NB; b = b + 1) begin : bank
                wire cs, cs_pin;
                wire [MA-1:0] macro_addr;
                if (SB == 0) begin : all
                    assign cs = RD_EN[p];
                end else begin : decode
                    assign cs = RD_EN[p] & (RD_ADDR[p*ABITS+MA +: (SB > 0 ? SB : 1)] == b);
                end
                spk_sram_buf csbuf (.A(cs), .X(cs_pin));
                for (i = 0; i < MA; i = i + 1) begin : abuf
                    spk_sram_and drv (.A(group_addr[(b/GROUP)*MA+i]), .B(cs_pin), .X(macro_addr[i]));
                end
                for (c = 0; c < NC; c = c + 1) begin : col
                    for (i = 0; i < MA; i = i + 1) begin : addr
                        spk_sram_d d (.CLK(RD_CLK[p]), .D(macro_addr[i]));
                    end
                    spk_sram_cs en (.CLK(RD_CLK[p]), .D(cs_pin));
                end
                for (i = 0; i < WIDTH; i = i + 1) begin : data
                    spk_sram_q q (.CLK(RD_CLK[p]), .Q(bank_q[b*WIDTH+i]));
                end
            end
        end
        // the read word: the bank addressed at the read, held like the macros' outputs
        for (p = 0; p < RD_PORTS; p = p + 1) begin : rd_mux
            if (NB == 1) begin : one
                assign RD_DATA[p*WIDTH +: WIDTH] = rd[p].bank_q[WIDTH-1:0];
            end else begin : banks
                wire [SB-1:0] sel;
                \$dffe #(.WIDTH(SB), .CLK_POLARITY(1'b1), .EN_POLARITY(1'b1)) sel_reg (
                    .CLK(RD_CLK[p]), .EN(RD_EN[p]), .D(RD_ADDR[p*ABITS+MA +: SB]), .Q(sel));
                assign RD_DATA[p*WIDTH +: WIDTH] = rd[p].bank_q[sel*WIDTH +: WIDTH];
            end
        end
        for (p = 0; p < WR_PORTS; p = p + 1) begin : wr
            wire [NG*MA-1:0] group_addr;
            wire [NG*WIDTH-1:0] group_data;
            for (g = 0; g < NG; g = g + 1) begin : group
                for (i = 0; i < MA; i = i + 1) begin : abuf
                    spk_sram_buf drv (.A(WR_ADDR[p*ABITS+i]), .X(group_addr[g*MA+i]));
                end
                for (i = 0; i < WIDTH; i = i + 1) begin : dbuf
                    spk_sram_buf drv (.A(WR_DATA[p*WIDTH+i]), .X(group_data[g*WIDTH+i]));
                end
            end
            for (b = 0; b < NB; b = b + 1) begin : bank
                wire hit;
                wire [MA-1:0] macro_addr;
                if (SB == 0) begin : all
                    assign hit = 1'b1;
                end else begin : decode
                    assign hit = WR_ADDR[p*ABITS+MA +: (SB > 0 ? SB : 1)] == b;
                end
                for (i = 0; i < MA; i = i + 1) begin : abuf
                    spk_sram_buf drv (.A(group_addr[(b/GROUP)*MA+i]), .X(macro_addr[i]));
                end
                for (c = 0; c < NC; c = c + 1) begin : col
                    for (i = 0; i < MA; i = i + 1) begin : addr
                        spk_sram_d d (.CLK(WR_CLK[p]), .D(macro_addr[i]));
                    end
                    // the macro's write enable (web0): the designs write whole words, so
                    // the 32 enable bits of a macro are one net
                    spk_sram_d en (.CLK(WR_CLK[p]), .D(WR_EN[p*WIDTH+c*32] & hit));
                end
                for (i = 0; i < WIDTH; i = i + 1) begin : data
                    spk_sram_d d (.CLK(WR_CLK[p]), .D(group_data[(b/GROUP)*WIDTH+i]));
                end
            end
        end
    endgenerate
endmodule
