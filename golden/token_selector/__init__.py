"""Golden model of the HeatViT token selector (float and bit-exact integer).

* :mod:`.decision`: keep decisions, order-preserving compaction, package-token consolidation
  and the control unit's stream layouts; every design choice the papers leave open is stated
  in its docstring (one place).
* :mod:`.float_selector`: the float selector (scores), parameter layout shared with training.
* :mod:`.int_selector`: the integer selector built from the GEMM and nonlinear golden functions.
"""

from .decision import (StageResult, always_kept, decide_float, decide_int, gather_writes, package_float,
                       package_int, positions, quantize_score, stage_float, stage_int, token_words)

from .float_selector import calibrate, param_shapes, select_float, selector_scores_float
from .int_selector import IntSelector, combine_scores, quantize_selector, select_int, selector_scores_int

__all__ = ["calibrate", "param_shapes", "select_float", "selector_scores_float", "IntSelector", "combine_scores",
           "quantize_selector", "select_int", "selector_scores_int",
           "StageResult", "always_kept", "decide_float", "decide_int", "gather_writes", "package_float",
           "package_int", "positions", "quantize_score", "stage_float", "stage_int", "token_words"]
