"""How many new tokens one generation may ask for on this instance (the Playground, samples, VLM answers)."""

from __future__ import annotations

from typing import Any

from engine import settings
from engine.errors import UserError

MAX_NEW_TOKENS_ENV = "TRAINPAD_MAX_NEW_TOKENS"


def max_new_tokens_cap() -> int:
    """The most new tokens one generation may ask for on this instance (``TRAINPAD_MAX_NEW_TOKENS``, default 1024)."""
    return max(1, settings.integer(MAX_NEW_TOKENS_ENV))


def capped_new_tokens(asked: Any, default: int = 64) -> tuple[int, str]:
    """``asked`` new tokens within the instance's cap, and a notice when it was lowered (empty otherwise)."""
    cap = max_new_tokens_cap()
    try:
        wanted = int(asked) if asked is not None else default
    except (TypeError, ValueError):
        raise UserError(f"max_new_tokens must be a whole number, not {asked!r}.") from None
    if wanted < 1:
        raise UserError(f"max_new_tokens must be at least 1, not {wanted}.")
    if wanted <= cap:
        return wanted, ""
    return (
        cap,
        f"Max new tokens is capped at {cap} on this instance ({MAX_NEW_TOKENS_ENV}); {wanted} asked, {cap} used.",
    )
