import sys
from pathlib import Path

# Testbench helpers (gemm_configs, ...) import as plain modules from this directory.
sys.path.insert(0, str(Path(__file__).parent))
