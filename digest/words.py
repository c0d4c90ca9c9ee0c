"""Words for counts in messages people read: "1 subscriber", "2 subscribers"."""

from __future__ import annotations

_IRREGULAR = {"entry": "entries", "this": "these", "was": "were", "is": "are"}


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` and ``noun``, in the plural unless ``count`` is 1:
    ``plural(1, "article")`` -> ``"1 article"``, ``plural(3, "entry")`` ->
    ``"3 entries"``; ``many`` gives an irregular plural."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {many or _IRREGULAR.get(noun) or noun + 's'}"
