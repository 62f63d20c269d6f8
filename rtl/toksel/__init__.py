"""Token-selector control unit (keep decisions, order-preserving compaction, package token) and
the score combiner that feeds it."""

from .combiner import ScoreCombiner
from .unit import TOKSEL_BAD_TAIL, TOKSEL_BAD_TOKENS, TokenSelectorUnit

__all__ = ["ScoreCombiner", "TokenSelectorUnit", "TOKSEL_BAD_TOKENS", "TOKSEL_BAD_TAIL"]
