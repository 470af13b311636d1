"""Fetch an http(s) URL without letting the URL reach places it should not.

A URL typed by a chat user must not make the server talk to itself or its network
(SSRF), nor hold a thread forever, nor fill the disk. So, by construction:

* only http and https;
* every address the host name resolves to is vetted against a policy, and the
  connection goes to the vetted address itself (a second DNS answer, e.g. DNS
  rebinding, is never used), keeping the name for the Host header and TLS SNI;
* redirects are followed here, a bounded number of times, each hop vetted again;
* one deadline covers the whole fetch, enforced by a watchdog that shuts the socket
  (a per-read timeout lets a slow drip last forever);
* the caller gives the size cap, and a refused or failed download leaves no file.

Every refusal and network failure is a ``FetchError`` whose message is the same
(so the errors cannot map a network); what really happened is in ``detail``, for logs.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError

logger = logging.getLogger(__name__)

POLICIES = ("public", "private", "any")
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 2**20
_WATCH_TICK = 0.1  # seconds between the watchdog's looks at the deadline and the abort flag
# RFC 1918 and IPv6 unique-local: what a LAN may use, unlike loopback or link-local.
_PRIVATE_NETS = tuple(
    ipaddress.ip_network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
GENERIC_MESSAGE = (
    "The address could not be fetched: it is unreachable, not allowed, or did not answer "
    "in time. Check that it is a public http(s) link and try again."
)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[tuple]]


class FetchError(PipelineError):
    """A URL was refused or could not be fetched; ``str()`` never says which (see ``detail``)."""

    kind = "fetch_error"

    def __init__(self, detail: str, *, cause: BaseException | None = None, status: int | None = None):
        super().__init__(GENERIC_MESSAGE, details={"status": status} if status else None)
        self.detail, self.cause, self.status = detail, cause, status


class FetchTooLarge(FetchError):
    """The body is larger than the caller's cap (only a vetted, reachable address can say so)."""

    kind = "fetch_too_large"

    def __init__(self, limit: int):
        super().__init__(f"larger than the {limit} bytes allowed")
        self.limit = limit


def address_allowed(address: str | Address, policy: str) -> bool:
    """Whether ``policy`` lets a fetch connect to ``address`` (an IP, scope id allowed)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown URL policy {policy!r}: use one of {', '.join(POLICIES)}")
    if policy == "any":
        return True
    ip = ipaddress.ip_address(str(address).split("%", 1)[0])
    return all(_allowed_one(candidate, policy) for candidate in _embedded(ip))


def _embedded(ip: Address) -> list[Address]:
    """The address and any IPv4 address it carries: ::ffff:127.0.0.1 is 127.0.0.1."""
    found = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        found += [inner for inner in (ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())) if inner]
        if ip in _NAT64:
            found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def _allowed_one(ip: Address, policy: str) -> bool:
    if ip in _NAT64:  # DNS64 networks reach every IPv4 host this way: the embedded address decides
        return True
    if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return False
    if ip.is_global:
        return True
    return policy == "private" and any(ip in net for net in _PRIVATE_NETS if net.version == ip.version)


def vet(
    host: str, port: int, policy: str, resolver: Resolver | None = None, timeout: float | None = None
) -> list[tuple]:
    """The ``(family, sockaddr)`` pairs to connect to; refused unless *every* answer is allowed.

    All, not some: a name that also points at a private address is not trusted at all.
    """
    resolve = resolver or (lambda name, number: socket.getaddrinfo(name, number, type=socket.SOCK_STREAM))
    answers = _within(timeout, resolve, host, port)
    pairs = list(dict.fromkeys((family, sockaddr) for family, _, _, _, sockaddr in answers))
    refused = [sockaddr[0] for _, sockaddr in pairs if not address_allowed(sockaddr[0], policy)]
    if not pairs or refused:
        raise FetchError(f"{host!r} resolves to {refused or 'nothing'}, refused by the {policy!r} policy")
    return pairs


def _within(timeout: float | None, resolve: Resolver, host: str, port: int) -> list[tuple]:
    """``resolve(host, port)``, given up after ``timeout``: getaddrinfo itself has no timeout."""
    box: dict = {}

    def run() -> None:
        try:
            box["answers"] = resolve(host, port)
        except (OSError, UnicodeError) as error:
            box["error"] = error

    worker = threading.Thread(target=run, daemon=True)  # left to finish on its own if it outlasts us
    worker.start()
    worker.join(timeout)
    if "error" in box:
        raise FetchError(f"cannot resolve {host!r}: {box['error']}", cause=box["error"])
    if "answers" not in box:
        raise FetchError(f"resolving {host!r} outlasted the deadline", cause=TimeoutError())
    return box["answers"]


class _Deadline:
    """Seconds left, and a watchdog that shuts the socket when none are left or the caller aborts."""

    def __init__(self, seconds: float, stall: float | None, abort: threading.Event | None):
        self.end = time.monotonic() + seconds
        self.stall, self.abort = stall, abort
        self.expired = False
        self._done = threading.Event()
        self._watched: socket.socket | None = None

    def left(self) -> float:
        if self.abort is not None and self.abort.is_set():
            self.expired = True
            raise FetchError("aborted by the caller")
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            self.expired = True
            raise FetchError("the overall deadline passed", cause=TimeoutError())
        return min(remaining, self.stall) if self.stall else remaining

    def guard(self, sock: socket.socket) -> None:
        self.cancel()
        self._done = threading.Event()
        # A duplicate, because wrapping in TLS detaches the original socket object.
        self._watched = sock.dup()
        threading.Thread(target=self._watch, args=(self._watched, self._done), daemon=True).start()

    def _watch(self, sock: socket.socket, done: threading.Event) -> None:
        while not done.wait(_WATCH_TICK):
            if time.monotonic() >= self.end or (self.abort is not None and self.abort.is_set()):
                self.expired = True
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv in the fetching thread
                except OSError:
                    pass
                return

    def cancel(self) -> None:
        self._done.set()
        if self._watched is not None:
            self._watched.close()
            self._watched = None


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to vetted addresses only; ``host`` stays the name for the Host header."""

    def __init__(self, host: str, port: int, pairs: list[tuple], deadline: _Deadline):
        super().__init__(host, port, timeout=deadline.left())
        self._pairs, self._deadline = pairs, deadline

    def _pinned_socket(self) -> socket.socket:
        last: OSError | None = None
        for family, sockaddr in self._pairs:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(self._deadline.left())
                self._deadline.guard(sock)
                sock.connect(sockaddr)
                return sock
            except OSError as error:
                sock.close()
                last = error
        raise last or OSError("no address to connect to")

    def connect(self) -> None:
        self.sock = self.pinned = self._pinned_socket()


class _PinnedHTTPS(_PinnedHTTP):
    default_port = 443  # so that the Host header carries no ":443"

    def __init__(self, host: str, port: int, pairs: list[tuple], deadline: _Deadline):
        super().__init__(host, port, pairs, deadline)
        self._tls = ssl.create_default_context()

    def connect(self) -> None:
        # The certificate is checked against the name, not the address: SNI and verification as usual.
        self.sock = self.pinned = self._tls.wrap_socket(self._pinned_socket(), server_hostname=self.host)


class Response:
    """An open response: ``status``, ``headers``, ``url`` (after redirects), ``read(n)``."""

    def __init__(self, connection: _PinnedHTTP, response: http.client.HTTPResponse, url: str, deadline: _Deadline):
        self._connection, self._response, self._deadline = connection, response, deadline
        self.url, self.status, self.reason = url, response.status, response.reason
        self.headers = response.headers

    def read(self, size: int = _CHUNK) -> bytes:
        """At most ``size`` bytes, b"" at the end; FetchError once the deadline passed."""
        try:
            # Not connection.sock: http.client drops it once an HTTP/1.0 response is under way.
            self._connection.pinned.settimeout(self._deadline.left())
            data = self._response.read1(size)
        except (OSError, http.client.HTTPException) as error:
            raise self._failure(error) from None
        if self._deadline.expired:
            raise self._failure(TimeoutError())
        return data

    def _failure(self, error: BaseException) -> FetchError:
        if self._deadline.abort is not None and self._deadline.abort.is_set():
            return FetchError("aborted by the caller")
        if self._deadline.expired or isinstance(error, TimeoutError):
            return FetchError("the deadline passed while reading", cause=TimeoutError())
        return FetchError(f"reading failed: {error!r}", cause=error)

    def close(self) -> None:
        self._deadline.cancel()
        self._connection.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_url(
    url: str,
    *,
    policy: str,
    timeout: float,
    stall_timeout: float | None = None,
    headers: dict[str, str] | None = None,
    max_redirects: int = MAX_REDIRECTS,
    resolver: Resolver | None = None,
    abort: threading.Event | None = None,
) -> Response:
    """GET ``url`` (redirects followed, each hop vetted); the final response, whatever its status.

    ``timeout`` bounds the whole fetch, reading the body included; ``stall_timeout`` also
    bounds each wait for data; setting ``abort`` ends it early (a shutting-down caller).
    Close the response (it is a context manager).
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown URL policy {policy!r}: use one of {', '.join(POLICIES)}")
    deadline = _Deadline(timeout, stall_timeout, abort)
    for hop in range(max_redirects + 1):
        try:
            response = _request(url, policy, deadline, headers or {}, resolver)
        except FetchError as error:
            error.detail = f"after {hop} redirect(s): {error.detail}" if hop else error.detail
            raise
        location = response.headers.get("Location")
        if response.status not in _REDIRECTS or not location:
            return response
        response.close()
        url = urllib.parse.urljoin(url, location.strip())
    deadline.cancel()
    raise FetchError(f"more than {max_redirects} redirects")


def _request(url: str, policy: str, deadline: _Deadline, headers: dict, resolver: Resolver | None) -> Response:
    scheme, host, port, target = _parse(url)
    pairs = vet(host, port, policy, resolver, deadline.left())
    connection = (_PinnedHTTPS if scheme == "https" else _PinnedHTTP)(host, port, pairs, deadline)
    try:
        connection.request("GET", target, headers={"User-Agent": "detbot/1", "Accept-Encoding": "identity", **headers})
        connection.pinned.settimeout(deadline.left())
        response = connection.getresponse()
    except FetchError:
        connection.close()
        deadline.cancel()
        raise
    except (OSError, http.client.HTTPException, ValueError) as error:
        connection.close()
        deadline.cancel()
        cause = TimeoutError() if deadline.expired else error
        raise FetchError(f"{host}:{port}: {error!r}", cause=cause) from None
    return Response(connection, response, url, deadline)


def _parse(url: str) -> tuple[str, str, int, str]:
    """scheme, ASCII host, port and request target; userinfo and fragment are dropped."""
    try:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").encode("idna").decode("ascii")
        port = parts.port or (443 if scheme == "https" else 80)
    except (ValueError, UnicodeError) as error:
        raise FetchError(f"malformed URL: {error}") from None
    if scheme not in ("http", "https") or not host:
        raise FetchError(f"not an http(s) URL with a host: scheme {scheme!r}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if any(ord(char) < 32 or ord(char) == 127 for char in target):
        raise FetchError("control characters in the URL path")
    # Non-ASCII is percent-encoded as a browser would; what is already encoded stays as it is.
    return scheme, host, port, urllib.parse.quote(target, safe="/?&=%:@!$'()*+,;~-._")


@dataclass(frozen=True)
class MinimumRate:
    """A download must average ``bytes_per_s`` from ``grace_s`` on: a slow drip holds a slot briefly."""

    bytes_per_s: float
    grace_s: float = 30.0

    def check(self, size: int, elapsed: float) -> None:
        if elapsed > self.grace_s and size < (elapsed - self.grace_s) * self.bytes_per_s:
            raise FetchError(f"too slow: {size} bytes in {elapsed:.0f} s")


def fetch_to_file(
    url: str,
    target: Path,
    *,
    policy: str,
    max_bytes: int,
    timeout: float,
    stall_timeout: float | None = None,
    resolver: Resolver | None = None,
    abort: threading.Event | None = None,
    min_rate: MinimumRate | None = None,
) -> int:
    """Download ``url`` to ``target`` (200 only); returns its size. On any failure no file is left."""
    target = Path(target)
    complete = False
    try:
        with open_url(
            url, policy=policy, timeout=timeout, stall_timeout=stall_timeout, resolver=resolver, abort=abort
        ) as response:
            if response.status != 200:
                raise FetchError(f"HTTP {response.status} {response.reason}", status=response.status)
            size = _copy(response, target, max_bytes, min_rate)
        complete = True
        return size
    finally:
        if not complete:
            target.unlink(missing_ok=True)


def _copy(response: Response, target: Path, max_bytes: int, min_rate: MinimumRate | None) -> int:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchTooLarge(max_bytes)
    size, start = 0, time.monotonic()
    with open(target, "wb") as out:
        while chunk := response.read(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise FetchTooLarge(max_bytes)
            if min_rate is not None:
                min_rate.check(size, time.monotonic() - start)
            out.write(chunk)
    if declared.isdigit() and size != int(declared):
        raise FetchError(f"the connection closed after {size} of {declared} bytes")
    return size


def describe(error: FetchError) -> str:
    """For logs only: what really happened."""
    return error.detail if error.cause is None else f"{error.detail} ({type(error.cause).__name__})"
