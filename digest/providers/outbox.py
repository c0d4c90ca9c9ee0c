"""The outbox provider: the dry run.

Writes one ``.eml`` per recipient into the outbox folder, one browser-viewable
``variant-N.html`` per variant, and an ``index.html`` listing variants and
recipients. It opens no network connection and writes nothing outside the
outbox folder. Files a previous dry run left there are removed first, so the
outbox always shows one run.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from digest.files import private_folder, write_private
from digest.messages import build_message
from digest.recipients import Recipient, RecipientResult, Status
from digest.rendering import RenderedVariant, personalize
from digest.settings import Settings
from digest.words import plural

_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]")


@dataclass
class _VariantFiles:
    number: int
    rendered: RenderedVariant
    page: str
    recipients: list[tuple[str, str]] = field(default_factory=list)  # (address, .eml file name)


MANIFEST = ".digest-outbox"  # the messages a dry run wrote, which the next one removes


class OutboxProvider:
    """Writes messages as files instead of sending them (see the module doc)."""

    name = "outbox"
    max_batch_size = 1000

    def __init__(self, folder: Path, settings: Settings, *, keep_previous: bool = False) -> None:
        self.folder = Path(folder)
        self.settings = settings
        self._variants: dict[str, _VariantFiles] = {}
        self._names: set[str] = {p.name for p in self.folder.glob("*.eml")} if keep_previous else set()
        if keep_previous:  # one message at a time (sign-up emails): each adds to the folder
            self.folder.mkdir(parents=True, exist_ok=True)
        else:
            self._clear_previous_run()

    def _clear_previous_run(self) -> None:
        """Remove what the previous dry run wrote here (its messages, as its
        manifest lists them, its pages and index), and nothing else: an
        outbox may be a folder that holds other files."""
        private_folder(self.folder)  # the messages hold addresses and live unsubscribe links
        manifest = self.folder / MANIFEST
        written = manifest.read_text(encoding="utf-8").split("\n") if manifest.is_file() else []
        mine = [self.folder / name for name in written if name.endswith(".eml") and name == Path(name).name]
        for old in [*mine, *self.folder.glob("variant-*.html"), self.folder / "index.html", manifest]:
            old.unlink(missing_ok=True)

    def send_batch(
        self, rendered: RenderedVariant, recipients: Sequence[Recipient], issue_key: str
    ) -> list[RecipientResult]:
        files = self._variants.get(rendered.variant_key)
        if files is None:
            # Numbered as `digest audience` and the built-in checks number them, so
            # "variant 3" in a warning is variant-3.html.
            number = rendered.number or len(self._variants) + 1
            files = _VariantFiles(number, rendered, f"variant-{number}.html")
            self._variants[rendered.variant_key] = files
            if recipients:
                # The browser view shows the variant as its first recipient sees it.
                page, _ = personalize(rendered, recipients[0])
                write_private(self.folder / files.page, page.encode("utf-8"))
        results = []
        for recipient in recipients:
            message = build_message(rendered, recipient, self.settings, issue_key=issue_key)
            name = self._file_name(recipient.email)
            write_private(self.folder / name, message.as_bytes())
            files.recipients.append((recipient.email, name))
            results.append(RecipientResult(recipient.email, Status.ACCEPTED, message_id=message["Message-ID"]))
        return results

    def _file_name(self, address: str) -> str:
        """``address.eml``; an address with characters unsafe in file names (or
        one that would clash with another's name) gets a short hash added, so
        no message overwrites another."""
        safe = _UNSAFE.sub("_", address)
        name = f"{safe}.eml"
        if safe != address or name in self._names:
            name = f"{safe}-{hashlib.sha256(address.encode()).hexdigest()[:8]}.eml"
        self._names.add(name)
        return name

    def close(self) -> None:
        """Write ``index.html`` listing every variant and its recipients."""
        if not self._variants:
            return
        rows = []
        for files in sorted(self._variants.values(), key=lambda f: f.number):
            people = "".join(
                f'<li><a href="{html.escape(eml)}">{html.escape(address)}</a></li>' for address, eml in files.recipients
            )
            rows.append(
                f"<section><h2>Variant {files.number}: {html.escape(files.rendered.subject)}</h2>"
                f"<p>{plural(len(files.rendered.article_ids), 'article')}, {plural(len(files.recipients), 'recipient')}, "
                f"{len(files.rendered.html.encode('utf-8')) / 1024:.1f} KB of HTML. "
                f'<a href="{files.page}">View in the browser</a></p><ul>{people}</ul></section>'
            )
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Outbox</title></head>'
            f"<body><h1>Outbox: {plural(sum(len(f.recipients) for f in self._variants.values()), 'message')}</h1>"
            + "".join(rows)
            + "</body></html>"
        )
        write_private(self.folder / "index.html", page.encode("utf-8"))
        written = [eml for files in self._variants.values() for _, eml in files.recipients]
        write_private(self.folder / MANIFEST, "\n".join(written).encode("utf-8"))
