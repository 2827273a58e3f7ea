"""JSON has no NaN or infinity: the one helper that makes a value safe to send or store.

A diverged trial reports a NaN or infinite loss; JSON (the API, the driver's pushes) and
PostgreSQL's JSONB reject such floats. Every value that leaves a process goes through
:func:`json_safe`, so such a figure travels and is stored as ``null``.

Example:
    >>> json_safe({"loss": float("nan"), "epochs": [1.0, float("inf")]})
    {'loss': None, 'epochs': [1.0, None]}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["json_safe"]


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by ``None``; mappings get string keys."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value
