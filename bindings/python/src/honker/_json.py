"""Payload encoding: JSON every reader can parse, refused with ``payload.not_json`` otherwise."""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import PayloadError

_MAX_SAFE = 2**53
# An integer beyond 2**53 has at least 16 digits: only then is the payload walked.
_LONG_DIGITS = re.compile(r"\d{16}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
loads = json.loads


def dumps(value: Any) -> str:
    """``value`` as compact JSON text.

    Raises:
        PayloadError: (``payload.not_json``) for values JSON cannot hold, non-finite floats and
            integers beyond 2**53 (which a JavaScript reader would round).
    """
    try:
        text = _dumps(value)
    except (TypeError, ValueError, RecursionError) as e:
        raise PayloadError("payload.not_json", f"payload is not JSON: {e}") from None
    if _LONG_DIGITS.search(text) is not None:
        _check_ints(value)
    # A lone surrogate cannot be UTF-8 (str.isascii is O(1) for the common all-ASCII text).
    if not text.isascii() and _SURROGATE.search(text) is not None:
        raise PayloadError("payload.not_json", "payload has a lone surrogate (not valid UTF-8 text)")
    return text


def _check_ints(value: Any) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > _MAX_SAFE:
            raise PayloadError("payload.not_json", f"integer {value} is beyond 2**53 (not every reader can parse it)")
    elif isinstance(value, dict):
        for v in value.values():
            _check_ints(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _check_ints(v)
