"""GEMM engine configurations the testbenches run, and which simulators run each."""

from heatvit.config import GemmConfig

GEMM_CONFIGS = {
    # Small enough for Icarus; K up to 3072 still fits the activation buffer at M = 2.
    "4x4": GemmConfig(rows=4, cols=4, act_buffer_words=1536, max_m=64, max_k=3072, max_n=256,
                      weight_fifo_depth=8, out_fifo_depth=4),
    # Non-square.
    "8x4": GemmConfig(rows=8, cols=4, act_buffer_words=1024, max_m=128, max_k=3072, max_n=512,
                      weight_fifo_depth=16, out_fifo_depth=8),
    # Two int8 MACs per DSP48E2 (dsp_packing = 2): one cascade segment, and two 8-row segments.
    "4x4p": GemmConfig(rows=4, cols=4, dsp_packing=2, act_buffer_words=1536, max_m=64, max_k=3072,
                       max_n=256, weight_fifo_depth=8, out_fifo_depth=4),
    "16x8p": GemmConfig(rows=16, cols=8, dsp_packing=2, act_buffer_words=1024, max_m=128, max_k=3072,
                        max_n=512, weight_fifo_depth=16, out_fifo_depth=8),
    # The benchmark's array size.
    "16x16": GemmConfig(rows=16, cols=16, act_buffer_words=1024, max_m=256, max_k=3072,
                        max_n=1024, weight_fifo_depth=32, out_fifo_depth=16),
}

# (config, simulator) pairs the test suite runs.
GEMM_RUNS = [("4x4", "icarus"), ("8x4", "icarus"), ("4x4", "verilator"), ("8x4", "verilator"),
             ("16x16", "verilator"), ("4x4p", "icarus"), ("16x8p", "verilator")]
