"""Opaque NextToken paging over a list, with AWS's rejection of tokens it did not issue."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import TypeVar

Item = TypeVar("Item")
_PREFIX = "cms-sandbox:"


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{offset}".encode()).decode()


def decode_token(token: str | None, invalid: Callable[[], Exception]) -> int:
    """The offset a token stands for (0 for no token); ``invalid()`` is raised for anything else."""
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid() from None
    if not text.startswith(_PREFIX) or not text[len(_PREFIX):].isdigit():
        raise invalid()
    return int(text[len(_PREFIX):])


def page(items: Sequence[Item], max_results: int | None, token: str | None, invalid: Callable[[], Exception]) -> tuple[list[Item], str | None]:
    """One page of ``items`` and the token for the next (None when this page is the last)."""
    start = decode_token(token, invalid)
    if start > len(items):
        raise invalid()
    if max_results is None:
        return list(items[start:]), None
    end = start + max_results
    return list(items[start:end]), encode_token(end) if end < len(items) else None
