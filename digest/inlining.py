"""CSS inlining: the one function behind which the inliner sits, so that it
can be swapped (premailer is unmaintained since 2021)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import urljoin


def inline_css(html: str, base_url: str | None, *, keep: Iterable[str] = ()) -> str:
    """The one place premailer is called (so it can be swapped).

    Copies the ``<style>`` rules into ``style=""`` attributes; keeps ``@media``
    and ``:hover`` rules in a ``<style>`` in ``<head>``, marked ``!important``
    so that they win over the inlined styles; never fetches remote CSS; makes
    links and image sources absolute against ``base_url``, except the
    hrefs in ``keep`` (the per-person placeholders). cssutils' log messages are silenced (they are
    about CSS that mail clients need, such as ``mso-`` properties).
    """
    from premailer import Premailer  # imported here: cssutils is slow to import

    logging.getLogger("CSSUTILS").setLevel(logging.CRITICAL)
    inliner = Premailer(
        base_url=base_url,
        allow_network=False,
        disable_validation=True,
        strip_important=False,  # keeps the !important premailer adds to the @media rules it leaves
        cssutils_logging_level=logging.CRITICAL,
        remove_classes=False,
        # The templates set img/table width and height attributes themselves; premailer
        # would otherwise copy CSS widths into them (width="100%" on an <img>).
        disable_basic_attributes=["width", "height"],
    )
    out = inliner.transform(html)
    if base_url:
        # premailer joins every href with base_url; a placeholder is not a URL yet.
        for placeholder in keep:
            out = out.replace(urljoin(base_url, placeholder), placeholder)
    return out
