// A 2-entry stream FIFO with the Amaranth port naming (x__valid / x__ready / x__payload).
// Known-good DUT for the cocotb stream BFM self-test (tests/cosim/test_cosim_bfm.py).
module stream_fifo #(parameter W = 16) (
    input  wire         clk,
    input  wire         rst,
    input  wire         i_stream__valid,
    output wire         i_stream__ready,
    input  wire [W-1:0] i_stream__payload,
    output wire         o_stream__valid,
    input  wire         o_stream__ready,
    output wire [W-1:0] o_stream__payload
);
    reg [W-1:0] mem [0:1];
    reg [1:0] count;
    reg rd_ptr, wr_ptr;
    wire push = i_stream__valid & i_stream__ready;
    wire pop = o_stream__valid & o_stream__ready;
    assign i_stream__ready = count != 2;
    assign o_stream__valid = count != 0;
    assign o_stream__payload = mem[rd_ptr];
    always @(posedge clk) begin
        if (rst) begin
            count <= 0; rd_ptr <= 0; wr_ptr <= 0;
        end else begin
            if (push) begin mem[wr_ptr] <= i_stream__payload; wr_ptr <= ~wr_ptr; end
            if (pop) rd_ptr <= ~rd_ptr;
            count <= count + {1'b0, push} - {1'b0, pop};
        end
    end
endmodule
