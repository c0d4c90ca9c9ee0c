"""What keeps ``digest serve`` standing in front of hostile clients.

- :class:`BodyLimit`: each route's request body is capped (the webhook at
  ``webhook_max_body``, forms at :data:`FORM_MAX_BODY`) before it is read:
  a declared ``Content-Length`` above the cap is answered 413 at once, a
  chunked body is counted as it arrives and cut at the cap; a body that
  does not arrive within ``serve_request_timeout`` seconds gets 408.
- :class:`HeaderDeadline`: uvicorn's h11 protocol closing any connection
  whose request line and headers are not in within
  ``serve_request_timeout`` seconds (of connecting, or of the previous
  answer): uvicorn's keep-alive timeout only starts after a first answer,
  so a client that never finishes its headers would hold a connection
  forever.
- :class:`PathOnlyAccessLog`: one line per request, without the query
  string (it holds tokens) and with control characters escaped (a path
  with ``%0d%0a`` must not write a forged line into the log).
- :class:`SecurityHeaders`: every answer, errors included, forbids being
  framed, sniffed as another type, and handing its token-carrying URL to
  the sites its links lead to (:func:`security_headers`).
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

ACCESS_LOG = logging.getLogger("digest.web")
FORM_MAX_BODY = 64 * 1024  # a one-click POST or a preferences form is a few hundred bytes


class _TooLarge(Exception):
    pass


async def _plain(send, status: int, text: str) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": text.encode()})


def security_headers(public_url: str) -> dict[str, str]:
    """The headers of every answer of ``digest serve``, whose pages carry
    tokens in their URL and one-click forms:

    - ``X-Frame-Options: DENY`` and CSP ``frame-ancestors 'none'``: no other
      site can frame a page under a decoy and have its button clicked
      (clickjacking; RFC 7034, CSP Level 2 for browsers that ignore XFO);
    - ``Content-Security-Policy``: nothing loads but the pages' own inline
      ``<style>`` (``default-src 'none'``: no script, image, font, frame),
      forms post only to this server or ``public_url``'s origin (the form
      actions are built from it), no ``<base>`` may move them;
    - ``Referrer-Policy: no-referrer``: a link on a page (the site's home)
      does not receive the page's URL, and its token, in ``Referer``;
    - ``X-Content-Type-Options: nosniff``: a plain-text or JSON error is
      never rendered as HTML.
    """
    parts = urlsplit(public_url)
    origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else ""
    policy = "; ".join([
        "default-src 'none'",
        "style-src 'unsafe-inline'",  # the pages' one <style> block; no script can run to abuse it
        f"form-action 'self'{' ' + origin if origin else ''}",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ])
    return {
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }


class SecurityHeaders:
    """ASGI middleware putting ``headers`` (:func:`security_headers`) on
    every response start, replacing any the app set itself, so the 404,
    405 and 413 answers of Starlette and :class:`BodyLimit` have them too."""

    def __init__(self, app, *, headers: dict[str, str]) -> None:
        self.app = app
        self.headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
        self.names = {name for name, _ in self.headers}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                kept = [(name, value) for name, value in message.get("headers", []) if name.lower() not in self.names]
                message = {**message, "headers": kept + self.headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """ASGI middleware capping request bodies: ``limits`` maps a path to its
    cap in bytes (other paths: :data:`FORM_MAX_BODY`); ``timeout`` is the
    time in seconds the whole body may take to arrive.

    The body is read (at most the cap, so memory stays bounded) before the
    app sees the request, which then gets it whole: every route answers
    413 or 408 the same way, whatever it would have checked first."""

    def __init__(self, app, *, limits: dict[str, int], timeout: float) -> None:
        self.app, self.limits, self.timeout = app, limits, timeout

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], FORM_MAX_BODY)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > limit:
            await _plain(send, 413, f"request body over {limit} bytes\n")
            return
        try:
            body = await asyncio.wait_for(_read_body(receive, limit), self.timeout)
        except _TooLarge:
            await _plain(send, 413, f"request body over {limit} bytes\n")
            return
        except TimeoutError:
            await _plain(send, 408, "request body too slow\n")
            return
        if body is None:  # the client left
            return
        delivered = False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()  # the disconnect, when the client goes
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _read_body(receive, limit: int) -> bytes | None:
    """The request body, or None when the client disconnects; raises
    :class:`_TooLarge` as soon as it passes ``limit`` bytes."""
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        part = message.get("body", b"")
        size += len(part)
        if size > limit:
            raise _TooLarge
        parts.append(part)
        if not message.get("more_body", False):
            return b"".join(parts)


def printable(text: str) -> str:
    """``text`` with every character that is not printable (CR, LF, other
    controls, bidi overrides) written as a ``\\xNN``/``\\uNNNN`` escape."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class PathOnlyAccessLog:
    """ASGI middleware that logs each request as ``client "METHOD /path"
    status`` to the ``digest.web`` logger at INFO: the path without its
    query string, which holds unsubscribe tokens (anyone reading a log line
    with one could unsubscribe that reader or change their topics), and
    with control characters escaped (:func:`printable`)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the server answers when the app fails before starting a response

        async def send_noting_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            client = scope["client"][0] if scope.get("client") else "-"
            ACCESS_LOG.info('%s "%s %s" %d', client, printable(scope["method"]), printable(scope["path"]), status)


class HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request line and
    headers have not arrived ``header_timeout`` seconds (a class attribute,
    set by :func:`digest.web.uvicorn_options`) after it was made or after
    the previous response (slowloris)."""

    header_timeout = 10.0

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline = self.loop.call_later(self.header_timeout, self._headers_overdue)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._deadline.cancel()
            self._deadline = self.loop.call_later(self.header_timeout, self._headers_overdue)

    def connection_lost(self, exc) -> None:
        self._deadline.cancel()
        super().connection_lost(exc)

    def _headers_overdue(self) -> None:
        # IDLE: h11 has not seen a whole request head since the timer started.
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()
