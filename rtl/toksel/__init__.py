"""Token-selector control unit: keep decisions, order-preserving compaction, package token."""

from .unit import TOKSEL_BAD_TAIL, TOKSEL_BAD_TOKENS, TokenSelectorUnit

__all__ = ["TokenSelectorUnit", "TOKSEL_BAD_TOKENS", "TOKSEL_BAD_TAIL"]
