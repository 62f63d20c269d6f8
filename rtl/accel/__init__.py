"""Building blocks of the whole accelerator (issue 11): token buffers, residual add, epilogue
routing, joined by the layer controller around the GEMM engine, nonlinear units and shell."""
