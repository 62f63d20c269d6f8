// heatvit simulation-only DDR model: an AXI4 slave memory (INCR bursts, byte strobes).
//
// Not RTL of the accelerator: it stands in for the ZCU102's DDR in whole-system simulations so
// that no Python runs per clock cycle while a job runs (heatvit.driver.fastsim).  The host side
// exchanges memory contents through files, between jobs:
//   * `load` (a one-cycle pulse) reads LOAD_FILE with $readmemh into the array ("@index" lines
//     give beat indices; beats the file does not name keep their contents);
//   * `dump` (a one-cycle pulse) writes beats [dump_lo, dump_hi] to DUMP_FILE with $writememh;
//   * `written`, `wr_lo`, `wr_hi`: whether any beat was written over AXI since the last `dump`,
//     and the lowest and highest such beat index (what the host must read back after a job).
// The memory starts as all zeros.
// Beat index = (address - BASE) >> log2(DATA_W / 8).  An access outside
// [BASE, BASE + 2**DEPTH_LOG2 beats) is answered with SLVERR (reads return 0, writes are dropped).
//
// Timing: no wait states.  A read burst's beats follow its address handshake back to back, and
// the next read address is accepted with the last beat of the current burst (so consecutive
// bursts stream without a gap); one write burst at a time, write responses queue.
module heatvit_axi_ddr #(
    parameter DATA_W = 128,
    parameter ADDR_W = 40,
    parameter ID_W = 1,
    parameter [63:0] BASE = 64'h0,
    parameter DEPTH_LOG2 = 16,
    parameter LOAD_FILE = "ddr_load.hex",
    parameter DUMP_FILE = "ddr_dump.hex"
) (
    input  wire              clk,
    input  wire              rst,
    input  wire              load,
    input  wire              dump,
    input  wire [31:0]       dump_lo,
    input  wire [31:0]       dump_hi,
    output reg               written,
    output reg  [31:0]       wr_lo,
    output reg  [31:0]       wr_hi,
    // write address
    input  wire [ID_W-1:0]   awid,
    input  wire [ADDR_W-1:0] awaddr,
    input  wire [7:0]        awlen,
    input  wire [2:0]        awsize,
    input  wire [1:0]        awburst,
    input  wire              awvalid,
    output wire              awready,
    // write data
    input  wire [DATA_W-1:0] wdata,
    input  wire [DATA_W/8-1:0] wstrb,
    input  wire              wlast,
    input  wire              wvalid,
    output wire              wready,
    // write response
    output wire [ID_W-1:0]   bid,
    output wire [1:0]        bresp,
    output wire              bvalid,
    input  wire              bready,
    // read address
    input  wire [ID_W-1:0]   arid,
    input  wire [ADDR_W-1:0] araddr,
    input  wire [7:0]        arlen,
    input  wire [2:0]        arsize,
    input  wire [1:0]        arburst,
    input  wire              arvalid,
    output wire              arready,
    // read data
    output wire [ID_W-1:0]   rid,
    output wire [DATA_W-1:0] rdata,
    output wire [1:0]        rresp,
    output wire              rlast,
    output wire              rvalid,
    input  wire              rready
);
    localparam NB = DATA_W / 8;
    localparam SHIFT = $clog2(NB);
    localparam DEPTH = 1 << DEPTH_LOG2;

    reg [DATA_W-1:0] mem [0:DEPTH-1];
    integer z;
    initial begin
        for (z = 0; z < DEPTH; z = z + 1) mem[z] = {DATA_W{1'b0}};
        written = 1'b0;
        wr_lo = 32'hFFFF_FFFF;
        wr_hi = 32'd0;
    end

    // -- host access between jobs ----------------------------------------------------------------
    always @(posedge clk) begin
        if (load) $readmemh(LOAD_FILE, mem);
        if (dump) $writememh(DUMP_FILE, mem, dump_lo, dump_hi);
    end

    // Beat index of a byte address, and whether it is inside the model.
    function [64:0] index_of(input [ADDR_W-1:0] addr);
        reg [63:0] off;
        begin
            off = {{(64-ADDR_W){1'b0}}, addr} - BASE;
            index_of = {({{(64-ADDR_W){1'b0}}, addr} < BASE) || ((off >> SHIFT) >= DEPTH), off >> SHIFT};
        end
    endfunction

    // -- reads -----------------------------------------------------------------------------------
    reg              r_active;
    reg [63:0]       r_idx;
    reg              r_bad;
    reg [8:0]        r_left;
    reg [ID_W-1:0]   r_id;
    wire             r_beat = r_active & rready;
    wire             r_end = r_beat & (r_left == 9'd1);
    wire [64:0]      ar_idx = index_of(araddr);
    wire [64:0]      rd_idx = {r_bad, r_idx};
    assign arready = ~r_active | r_end;
    assign rvalid = r_active;
    assign rid = r_id;
    assign rlast = r_left == 9'd1;
    assign rresp = r_bad ? 2'b10 : 2'b00;
    assign rdata = r_bad ? {DATA_W{1'b0}} : mem[r_idx[DEPTH_LOG2-1:0]];
    always @(posedge clk) begin
        if (rst) begin
            r_active <= 1'b0;
        end else begin
            if (r_beat) begin
                r_idx <= r_idx + 64'd1;
                r_left <= r_left - 9'd1;
                // (a burst never wraps: bursts do not cross 4 KiB)
                if (r_end) r_active <= 1'b0;
            end
            if (arvalid & arready) begin
                r_active <= 1'b1;
                r_idx <= ar_idx[63:0];
                r_bad <= ar_idx[64] | (arburst != 2'b01) | (arsize != SHIFT);
                r_left <= {1'b0, arlen} + 9'd1;
                r_id <= arid;
            end
        end
    end

    // -- writes ----------------------------------------------------------------------------------
    reg              w_active;
    reg [63:0]       w_idx;
    reg              w_bad;     // sticky over the burst: its response is SLVERR
    reg [ID_W-1:0]   w_id;
    reg [15:0]       b_count;   // responses owed
    reg              b_bad [0:255];
    reg [ID_W-1:0]   b_ids [0:255];
    reg [7:0]        b_head, b_tail;
    wire [64:0]      aw_idx = index_of(awaddr);
    wire             w_beat = w_active & wvalid;
    wire             w_end = w_beat & wlast;
    wire             b_take = (b_count != 16'd0) & bready;
    assign awready = ~w_active;
    assign wready = w_active;
    assign bvalid = b_count != 16'd0;
    assign bresp = b_bad[b_head] ? 2'b10 : 2'b00;
    assign bid = b_ids[b_head];
    integer i;
    always @(posedge clk) begin
        if (rst) begin
            w_active <= 1'b0;
            b_count <= 16'd0;
            b_head <= 8'd0;
            b_tail <= 8'd0;
        end else begin
            if (awvalid & awready) begin
                w_active <= 1'b1;
                w_idx <= aw_idx[63:0];
                w_bad <= aw_idx[64] | (awburst != 2'b01) | (awsize != SHIFT);
                w_id <= awid;
            end
            if (dump) begin
                written <= 1'b0;
                wr_lo <= 32'hFFFF_FFFF;
                wr_hi <= 32'd0;
            end
            if (w_beat) begin
                if (!w_bad) begin
                    for (i = 0; i < NB; i = i + 1)
                        if (wstrb[i]) mem[w_idx[DEPTH_LOG2-1:0]][8*i +: 8] <= wdata[8*i +: 8];
                    written <= 1'b1;
                    if (w_idx[31:0] < wr_lo || dump) wr_lo <= w_idx[31:0];
                    if (w_idx[31:0] > wr_hi || dump) wr_hi <= w_idx[31:0];
                end
                w_idx <= w_idx + 64'd1;
                if (w_end) begin
                    w_active <= 1'b0;
                    b_bad[b_tail] <= w_bad;
                    b_ids[b_tail] <= w_id;
                    b_tail <= b_tail + 8'd1;
                end
            end
            if (b_take) b_head <= b_head + 8'd1;
            b_count <= b_count + {15'd0, w_end} - {15'd0, b_take};
        end
    end
endmodule
