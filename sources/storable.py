"""What text the stores cannot hold: a NUL character (U+0000).

PostgreSQL text cannot hold NUL, nor can a MongoDB document's keys. No name, email, id or note
needs one, so every way in (GraphQL variables and literals, upstream events) refuses it as the
sender's error rather than failing deep in a store.
"""

from __future__ import annotations

from typing import Any

NUL = "\x00"


def holds_nul(value: Any) -> bool:
    """Whether a JSON-like value holds a NUL in any string, dictionary keys included."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(holds_nul(key) or holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(holds_nul(item) for item in value)
    return False
