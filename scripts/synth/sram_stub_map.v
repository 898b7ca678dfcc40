// Yosys techmap: replace each $mem_v2 (left by `memory -nomap`) by zero-area timing stubs so
// that memories never become flip-flops. spk_sram_q launches a read-data bit from the port
// clock; spk_sram_d captures an address/data/enable bit (one write enable per 32 data bits,
// the OpenRAM macro's word). SRAM area and energy are added from
// hw/sram_model.py; the stubs only give STA the memory boundary (an ideal synchronous macro).
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

    genvar p, i;
    generate
        for (p = 0; p < RD_PORTS; p = p + 1) begin : rd
            for (i = 0; i < WIDTH; i = i + 1) begin : data
                spk_sram_q q (.CLK(RD_CLK[p]), .Q(RD_DATA[p*WIDTH+i]));
            end
            for (i = 0; i < ABITS; i = i + 1) begin : addr
                spk_sram_d d (.CLK(RD_CLK[p]), .D(RD_ADDR[p*ABITS+i]));
            end
            spk_sram_d en (.CLK(RD_CLK[p]), .D(RD_EN[p]));
        end
        for (p = 0; p < WR_PORTS; p = p + 1) begin : wr
            for (i = 0; i < WIDTH; i = i + 1) begin : data
                spk_sram_d d (.CLK(WR_CLK[p]), .D(WR_DATA[p*WIDTH+i]));
            end
            // one write enable per 32-bit macro (its web0 pin), not per bit: the designs
            // write whole words, so each group's enable bits are one net
            for (i = 0; i < WIDTH; i = i + 32) begin : we
                spk_sram_d en (.CLK(WR_CLK[p]), .D(WR_EN[p*WIDTH+i]));
            end
            for (i = 0; i < ABITS; i = i + 1) begin : addr
                spk_sram_d d (.CLK(WR_CLK[p]), .D(WR_ADDR[p*ABITS+i]));
            end
        end
    endgenerate
endmodule
