"""Fetching a feed over http(s), bounded: a feed's server decides nothing
about how long, how much or where.

- one total deadline per feed (``feed_timeout`` seconds, default 30), for
  connecting, every redirect, and every read: a server trickling a byte a
  second is cut off at the deadline, not kept alive by each byte;
- the decoded body is capped while it streams (``feed_max_bytes``, default
  20 MB), also for gzip and deflate, decompressed here with a bound on each
  step (a 1 MB gzip that expands to 1 GiB stops at the cap);
- at most :data:`MAX_REDIRECTS` redirects, to http(s) URLs only;
- no connection to loopback, private, link-local, multicast, reserved or
  unspecified addresses, checked on the address each connection really goes
  to (after DNS, for the first URL and every redirect: no rebinding),
  unless ``feed_allow_private`` lists the address (``10.0.0.0/8``,
  ``127.0.0.1:8080``, ``[::1]:8080``) or is true. True lets the feed's own
  host and port (and its ports 80 and 443) be private (an intranet feed, a
  test server), but a redirect from there to another host or port on such
  an address is still refused: a feed's server may not steer the fetch to
  another internal service.

Feeds are fetched directly, never through ``HTTP_PROXY``: a proxy would
connect to addresses this module cannot check. Each limit hit is a
:class:`digest.errors.SourceError` naming it.

A long-running server (``digest preview --serve``) reads feeds through a
:class:`FeedCache`, filled by a background thread, so that no request
handler ever waits on a feed.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import httpcore
import httpx

from digest import __version__
from digest.errors import SourceError
from digest.settings import Settings, private_address_entry

MAX_REDIRECTS = 5
READ_CHUNK = 64 * 1024
ACCEPT_ENCODING = "gzip, deflate"  # only what is decompressed here with a bound
USER_AGENT = f"digest/{__version__} (newsletter digest generator)"
REFETCH_EVERY = 300.0  # seconds between two fetches of a feed by a FeedCache


@dataclass(frozen=True)
class Fetched:
    """A fetched document: its decoded ``body``, the final ``url`` after
    redirects and the response ``headers``."""

    body: bytes
    url: str
    headers: httpx.Headers


def fetch(url: str, settings: Settings, *, user_agent: str = USER_AGENT) -> Fetched:
    """GET ``url`` within the limits of the module doc. Raises
    :class:`SourceError` for a limit hit, a refused address, an HTTP error
    status (>= 400) or a connection failure."""
    limit = settings.feed_max_bytes
    deadline = time.monotonic() + settings.feed_timeout
    backend = _GuardedBackend(deadline, settings.feed_allow_private, _origin(url))
    transport = httpx.HTTPTransport(trust_env=False)
    # httpx takes no network backend; its pool does (httpcore.ConnectionPool(network_backend=...)).
    assert isinstance(transport._pool, httpcore.ConnectionPool)
    transport._pool._network_backend = backend
    headers = {"User-Agent": user_agent, "Accept-Encoding": ACCEPT_ENCODING}
    try:
        with (
            httpx.Client(transport=transport, trust_env=False, follow_redirects=True, max_redirects=MAX_REDIRECTS, timeout=settings.feed_timeout) as client,
            client.stream("GET", url, headers=headers) as response,
        ):
            if response.status_code >= 400:
                raise SourceError(f"HTTP {response.status_code} {response.reason_phrase}")
            body = _decoded(response, limit)
            return Fetched(body, str(response.url), response.headers)
    except _Refused as exc:
        raise SourceError(str(exc)) from None
    except httpx.TimeoutException:
        raise SourceError(f"not fetched within {settings.feed_timeout:g} s (feed_timeout)") from None
    except httpx.TooManyRedirects:
        raise SourceError(f"more than {MAX_REDIRECTS} redirects") from None
    except httpx.UnsupportedProtocol as exc:
        raise SourceError(f"a redirect to a URL that is not http(s): {exc}") from None
    except httpx.HTTPError as exc:
        raise SourceError(f"cannot fetch: {exc}") from None


def _decoded(response: httpx.Response, limit: int) -> bytes:
    """The body of ``response``, decompressed by at most ``limit`` bytes at
    a time (``zlib``'s ``max_length``), refused once over ``limit``."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("identity", ""):
        inflate = None
    elif encoding in ("gzip", "x-gzip", "deflate"):
        inflate = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header, told apart by zlib
    else:
        raise SourceError(f"Content-Encoding {encoding!r} was not asked for")
    parts, size = [], 0
    too_big = SourceError(f"larger than {limit:,} bytes (feed_max_bytes)")
    for raw in response.iter_raw(READ_CHUNK):
        data = raw
        while data:
            if inflate is None:
                piece, data = data, b""
            else:
                piece = inflate.decompress(data, limit - size + 1)
                data = inflate.unconsumed_tail
            size += len(piece)
            if size > limit:
                raise too_big
            parts.append(piece)
    if inflate is not None:
        try:
            tail = inflate.flush()
        except zlib.error as exc:
            raise SourceError(f"broken {encoding} body: {exc}") from None
        if size + len(tail) > limit:
            raise too_big
        parts.append(tail)
    return b"".join(parts)


class _Refused(Exception):
    """A connection this module will not make (its message says why)."""


def _origin(url: str) -> tuple[str, int]:
    parts = httpx.URL(url)
    return (parts.host.lower(), parts.port or (443 if parts.scheme == "https" else 80))


def _allowed(address: str, port: int, allow: bool | list[str], own_origin: bool) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if getattr(ip, "ipv4_mapped", None):
        ip = ip.ipv4_mapped
    if (ip.is_global and not ip.is_multicast) or (allow is True and own_origin):
        return True
    for entry in allow if isinstance(allow, list) else []:
        network, entry_port = private_address_entry(entry)
        if ip in network and entry_port in (None, port):
            return True
    return False


def _kind(address: str) -> str:
    ip = ipaddress.ip_address(address.split("%")[0])
    for name in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    return "non-public"


class _Stream(httpcore.NetworkStream):
    """A network stream whose every operation ends by ``deadline``."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner, self._deadline = inner, deadline

    def _left(self, timeout: float | None, error: type[Exception]) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise error("the feed's deadline passed")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname: str | None = None, timeout: float | None = None) -> httpcore.NetworkStream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, self._left(timeout, httpcore.ConnectTimeout)), self._deadline)

    def get_extra_info(self, info: str):
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.SyncBackend):
    """httpcore's socket backend, connecting only to allowed addresses
    (resolved here, so the address checked is the address used) and
    wrapping each stream in the feed's deadline."""

    def __init__(self, deadline: float, allow: bool | list[str], origin: tuple[str, int]) -> None:
        self.deadline, self.allow, self.origin = deadline, allow, origin

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None, socket_options=None) -> httpcore.NetworkStream:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ConnectTimeout("the feed's deadline passed")
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror}") from None
        addresses = list(dict.fromkeys(info[4][0] for info in found))
        # The feed's own host and port; or its standard http/https port (an http -> https redirect).
        own = host.lower().strip("[]") == self.origin[0].strip("[]") and port in (self.origin[1], 80, 443)
        allowed = [address for address in addresses if _allowed(address, port, self.allow, own)]
        if not allowed:
            what = f"{host} is" if host == addresses[0] else f"{host} resolves to {addresses[0]},"
            if self.allow is True and not own:
                raise _Refused(f"refused: a redirect to {host}:{port}, {_kind(addresses[0])} and not the feed's own host (list it in feed_allow_private to allow it)")
            raise _Refused(f"refused: {what} a {_kind(addresses[0])} address (set feed_allow_private to fetch feeds from it)")
        stream = super().connect_tcp(allowed[0], port, min(timeout or left, left), local_address, socket_options)
        return _Stream(stream, self.deadline)


class FeedCache:
    """Feeds fetched by a background thread (:meth:`start`), each again
    every ``every`` seconds; :meth:`get` answers at once from what is there.
    ``settings`` gives the current settings (their limits apply to each
    fetch)."""

    def __init__(self, settings: Callable[[], Settings], every: float = REFETCH_EVERY) -> None:
        self._settings, self._every = settings, every
        self._found: dict[str, Fetched | SourceError] = {}
        self._wanted: list[str] = []
        self._lock = threading.Lock()
        self._wake, self._stop = threading.Event(), threading.Event()

    def get(self, url: str) -> Fetched:
        """The last fetch of ``url``. Raises :class:`SourceError` for a
        failed fetch, or while the first one is under way (which a first
        call asks for)."""
        with self._lock:
            found = self._found.get(url)
            if url not in self._wanted:
                self._wanted.append(url)
                self._wake.set()
        if found is None:
            raise SourceError("being fetched in the background: reload in a moment")
        if isinstance(found, SourceError):
            raise found
        return found

    def start(self) -> None:
        """Fetch in a daemon thread until :meth:`stop`."""
        threading.Thread(target=self._run, name="digest-feed-cache", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _run(self) -> None:
        fetched_at: dict[str, float] = {}
        while not self._stop.is_set():
            with self._lock:
                due = [url for url in self._wanted if time.monotonic() - fetched_at.get(url, -self._every) >= self._every]
            for url in due:
                try:
                    result: Fetched | SourceError = fetch(url, self._settings())
                except SourceError as exc:
                    result = exc
                except Exception as exc:  # noqa: BLE001 - settings that no longer load: say so on the page, keep serving
                    result = SourceError(f"not fetched: {exc}")
                fetched_at[url] = time.monotonic()
                with self._lock:
                    self._found[url] = result
            self._wake.wait(min(self._every, 1.0) if not due else 0)
            self._wake.clear()
