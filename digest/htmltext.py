"""HTML to text: the text of an HTML fragment, block by block, for
excerpts, titles and reading times (scripts, styles and SVG left out,
entities decoded)."""

from __future__ import annotations

from html.parser import HTMLParser

_BLOCK_TAGS = {
    "address", "article", "aside", "blockquote", "br", "dd", "details", "div", "dl", "dt",
    "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
    "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "td", "th", "tr", "ul",
}  # fmt: skip
_HIDDEN_TAGS = {"script", "style", "template", "noscript", "svg", "math", "iframe", "object", "head", "title"}
# Text in these is not prose to quote in an excerpt: headings, code, tables, captions, menus.
_NOT_PROSE = {"h1", "h2", "h3", "h4", "h5", "h6", "pre", "table", "figure", "figcaption", "nav", "aside"}
_VOID_TAGS = {"br", "hr"}


class _TextBlocks(HTMLParser):
    """Collects the text of an HTML fragment block by block (entities decoded,
    whitespace collapsed), noting whether each block is prose."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[bool, str]] = []
        self._parts: list[str] = []
        self._open: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN_TAGS:
            self._hidden += 1
        elif tag in _BLOCK_TAGS:
            self._flush()
            if tag not in _VOID_TAGS:
                self._open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN_TAGS:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BLOCK_TAGS:
            self._flush()
            if tag in self._open:
                del self._open[len(self._open) - 1 - self._open[::-1].index(tag) :]

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._parts.append(data)

    def close(self) -> None:
        super().close()
        self._flush()

    def _flush(self) -> None:
        text = " ".join("".join(self._parts).split())
        self._parts.clear()
        if text:
            self.blocks.append((not _NOT_PROSE.intersection(self._open), text))


def text_blocks(fragment: str | None) -> list[tuple[bool, str]]:
    """The text blocks of an HTML fragment as ``(is_prose, text)`` pairs, in
    order. Scripts, styles and SVG are left out; entities are decoded."""
    if not fragment:
        return []
    parser = _TextBlocks()
    parser.feed(fragment)
    parser.close()
    return parser.blocks


def html_to_text(fragment: str | None) -> str:
    """Plain text of an HTML fragment on one line (blocks joined by spaces)."""
    return " ".join(text for _, text in text_blocks(fragment))


def prose_text(fragment: str | None) -> str:
    """The prose of an HTML body (paragraphs, lists, quotes; not headings,
    code or tables), or all its text when it has no prose."""
    return prose(text_blocks(fragment))


def prose(blocks: list[tuple[bool, str]]) -> str:
    """The prose blocks of :func:`text_blocks` joined, or all of them when none is prose."""
    return " ".join(text for prose, text in blocks if prose) or " ".join(text for _, text in blocks)
