"""Per-reader frequency: each reader gets, at their frequency's send time,
the articles published since the end of the last issue *they* were sent.

A reader's frequency is their stored choice (preferences page, sign-up),
else their list row's ``frequency`` column, else the ``frequency_default``
of the settings. An issue of one frequency (its key and send time from
that frequency's schedule) goes to the readers of that frequency; each
reader's window runs from the end of the window of the last scheduled
issue they were sent (any frequency: a weekly reader who switches to daily
on Thursday gets Monday-to-Thursday's articles in Friday's daily issue) to
this issue's send time. A reader who was never sent an issue starts at the
frequency's previous send time. Articles of special editions (``--issue``)
they were sent are left out, so nothing reaches anyone twice; readers with
the same window and tags share one render (:func:`digest.audience.build_variants`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from digest.subscribers import Subscriber

if TYPE_CHECKING:
    from digest.settings import Settings


def frequency_of(subscriber: Subscriber, settings: Settings) -> str:
    """``subscriber``'s frequency: theirs (already merged with stored
    choices by :func:`digest.audience.load_audience`), else the default."""
    return subscriber.frequency or settings.frequency_default


@dataclass
class ReaderWindows:
    """The window of each reader of one issue. ``default_start`` (aware)
    starts the window of readers never sent an issue; ``last_end`` maps
    subscriber ids to the end of the last scheduled issue they were sent;
    ``specials`` to the article ids of special editions they were sent."""

    default_start: datetime
    last_end: Mapping[str, datetime]
    specials: Mapping[str, set[str]]
    _excluded: dict[str, frozenset[str]] = field(default_factory=dict)

    def of(self, subscriber: Subscriber) -> tuple[datetime, frozenset[str]]:
        """(start of the reader's window, exclusive; article ids to leave out)."""
        start = self.last_end.get(subscriber.key, self.default_start)
        ids = self.specials.get(subscriber.key)
        if not ids:
            return start, frozenset()
        key = ",".join(sorted(ids))
        return start, self._excluded.setdefault(key, frozenset(ids))  # one object per distinct set

    def earliest(self, readers: Iterable[Subscriber]) -> datetime:
        """The earliest window start among ``readers`` (the selection's window start)."""
        return min((self.of(reader)[0] for reader in readers), default=self.default_start)
