"""Fixed-point formats of the nonlinear units (all integers; ``Qi.f`` = value * 2**f).

Every rounding is round half away from zero (:func:`heatvit.golden.round_shift`), every
out-of-range value saturates.  The table bodies live in :mod:`.tables`.
"""

import math

# GELU / sigmoid core input, and GELU core output: signed 20-bit Q7.12 (range [-128, 128)).
ACT_BITS = 20
ACT_FRAC = 12
# The GELU table covers [-8, 8): index u = x + 2**15 (16 bits); x >= 8 passes through, x < -8 -> 0.
GELU_TABLE_BITS = 16
# Sigmoid: table on |x| < 16 (16-bit index), output unsigned Q1.15 in [0, 2**15].
SIGMOID_TABLE_BITS = 16
SIGMOID_FRAC = 15

# pow2 core: z = -log2(value) as unsigned 23-bit Q5.18 (z in [0, 32)); output Q1.POW2_FRAC.
POW2_IN_BITS = 23
POW2_IN_FRAC = 18
POW2_FRAC = 22            # the table's nominal output: 2**-f * 2**22, f in [0, 1)

# Standalone exp(-x): x unsigned 16-bit Q4.12 (x in [0, 16)); output unsigned Q1.15.
EXP_IN_BITS = 16
EXP_IN_FRAC = 12
EXP_OUT_FRAC = 15
LOG2E_FRAC = 24
LOG2E_Q = round(math.log2(math.e) * (1 << LOG2E_FRAC))   # 25-bit unsigned constant

# Reciprocal / rsqrt: mantissa of MANT_BITS fraction bits after leading-one normalisation
# (truncated), result mantissa r in [2**(OUT_FRAC-1), 2**OUT_FRAC].
MANT_BITS = 18
RECIP_FRAC = 16
RSQRT_FRAC = 16

# Guard bits of every table (its accumulator carries this many bits below the output LSB).
GUARD = 6
# Each table's own bound, in LSBs of its nominal output (end-to-end error is checked separately).
TABLE_BOUND = 0.25

# Softmax: the score difference (max - x) is requantized to the pow2 input z (Q5.18) by a
# 24-bit multiplier; exponentials are kept in Q1.SOFTMAX_EXP_FRAC so the row sum is accurate.
SOFTMAX_MULT_BITS = 24
SOFTMAX_EXP_FRAC = 22
# LayerNorm: normalised value in Q.LN_NORM_FRAC, gamma multiplier signed LN_GAMMA_BITS.
LN_NORM_FRAC = 12
LN_GAMMA_BITS = 18
LN_BETA_BITS = 48
# LayerNorm eps carries this many fraction bits below the variance's integer LSB (even; at most
# 2 * (RSQRT_FRAC - LN_NORM_FRAC) so the normalising shift stays non-negative).  With 8 bits every
# row length is within 1 LSB: eps rounded to an integer was off by up to 16 LSB for rows of 2.
LN_EPS_FRAC = 8
# Elementwise input / output requantization multipliers (unsigned).
MULT_BITS = 16
