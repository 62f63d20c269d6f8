"""Bit-exact golden models of the nonlinear units (issue 3); see docs/nonlinear.md.

Caller-facing (float scales in, integer parameters out; see /work docs/nonlinear.md "API"):
``gelu_params``/``gelu``, ``sigmoid_params``/``sigmoid``, ``softmax_params``/``softmax``,
``layernorm_params``/``layernorm``.  Fixed-point cores: ``gelu_fixed``, ``sigmoid_fixed``,
``pow2_neg``, ``exp_neg``, ``reciprocal``, ``rsqrt``, ``divide``.
"""

from .elementwise import GELU_S_OUT_MIN, SIGMOID_S_OUT_MIN, ActParams, gelu, gelu_params, sigmoid, sigmoid_params
from .layernorm import LayerNormParams, layernorm, layernorm_params
from .ppoly import Table, TableError, evaluate, fit_table
from .softmax import SoftmaxParams, softmax, softmax_params
from .units import divide, exp_neg, gelu_fixed, pow2_neg, reciprocal, rsqrt, sigmoid_fixed

__all__ = ["ActParams", "gelu", "gelu_params", "sigmoid", "sigmoid_params", "LayerNormParams", "layernorm",
           "layernorm_params", "Table", "TableError", "evaluate", "fit_table", "SoftmaxParams", "softmax",
           "softmax_params", "divide", "exp_neg", "gelu_fixed", "pow2_neg", "reciprocal", "rsqrt",
           "sigmoid_fixed"]
