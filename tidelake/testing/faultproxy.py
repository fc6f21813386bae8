"""A fault-injecting HTTP/1.1 reverse proxy, for putting real S3 faults between a client and moto.

:class:`FaultProxy` listens on 127.0.0.1, forwards every request to one upstream (the embedded S3
API, :class:`tidelake.s3server.EmbeddedS3`) and, while it runs, lets the test that owns it inject
faults into the requests that match a method and a path pattern:

* ``status``: answer ``503 SlowDown`` (or any status and S3 error code) without asking upstream;
* ``reset``: close the connection with a TCP RST as soon as the request head arrives, before the
  upstream sees anything (the request certainly did not happen);
* ``lost_response``: forward the request, let the upstream apply it, then reset the connection
  instead of answering (the request happened, but the client cannot know);
* ``delay``: hold the request for a while before forwarding it (a latency spike).

Faults come as :class:`FaultRule` objects: "fail the next N matching requests" (:meth:`FaultProxy.
fail`), "an outage window of S seconds" (:meth:`FaultProxy.outage`, optionally opened by the
(k+1)-th matching request), "delay matching requests" (:meth:`FaultProxy.latency`). Counters
(:meth:`FaultProxy.stats`) and a log of recent requests (:meth:`FaultProxy.records`) let a test
assert that the faults it asked for really happened.

Bodies are streamed, never buffered whole: ``Content-Length`` and ``chunked`` framing on both
sides, bodies delimited by connection close, ``HEAD``/``204``/``304`` without bodies, ``Expect:
100-continue`` answered by the proxy itself. Client connections are kept alive, each with its own
upstream connection. One thread per client connection: S3 clients open a handful of them.

Only the standard library is used, so the module imports anywhere (no dagster, no moto).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import re
import select
import socket
import struct
import threading
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

log = logging.getLogger(__name__)

FaultKind = Literal["status", "reset", "lost_response", "delay"]
FAILING_KINDS: frozenset[str] = frozenset({"status", "reset", "lost_response"})

LOOPBACK = "127.0.0.1"
_COPY_BYTES = 64 * 1024
_MAX_HEAD_BYTES = 64 * 1024
_RECORDS_KEPT = 20_000
_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    412: "Precondition Failed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
# Headers that describe one hop; the proxy rewrites them for the hop it answers itself.
_HOP_HEADERS = frozenset({"expect", "connection", "keep-alive", "proxy-connection"})


@dataclass
class FaultRule:
    """One kind of fault applied to the requests that match ``method`` and ``path``.

    A request matches when its method is in ``methods`` (``None``: any) and ``path`` (a regular
    expression, searched in the URL-decoded request target, query included) finds a match. Of the
    matching requests the first ``after`` pass untouched; from then on every ``every``-th one gets
    the fault, until ``times`` faults were injected or the window of ``seconds`` closed. The
    window opens when the rule is added if ``after`` is 0, else at the first fault.
    """

    kind: FaultKind
    methods: frozenset[str] | None = None
    path: re.Pattern[str] | None = None
    times: int | None = None
    after: int = 0
    every: int = 1
    seconds: float | None = None
    status: int = 503
    code: str = "SlowDown"
    delay: float = 0.0
    opened_at: float | None = None
    matched: int = 0
    """Requests that matched while the rule was active."""
    injected: int = 0
    """Faults this rule injected."""
    removed: bool = False

    def matches(self, method: str, target: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return self.path is None or self.path.search(target) is not None

    def active(self, now: float) -> bool:
        """Whether the rule can still inject a fault."""
        if self.removed or (self.times is not None and self.injected >= self.times):
            return False
        return not (
            self.seconds is not None
            and self.opened_at is not None
            and now >= self.opened_at + self.seconds
        )

    @property
    def done(self) -> bool:
        """True once the rule will never inject again (count used up, window closed, removed)."""
        return not self.active(time.monotonic())

    def _fires(self, now: float) -> bool:
        self.matched += 1
        if self.matched <= self.after or (self.matched - self.after - 1) % self.every:
            return False
        if self.seconds is not None and self.opened_at is None:
            self.opened_at = now
        self.injected += 1
        return True


@dataclass(frozen=True)
class RequestRecord:
    """One request the proxy saw: what it was, what the client got, which fault (if any)."""

    at: float
    """Wall-clock time (Unix seconds) the request head arrived."""
    method: str
    target: str
    """URL-decoded request target (path and query)."""
    status: int | None
    """Status sent to the client; ``None`` when the connection was reset or the upstream failed."""
    fault: str | None
    """The failing fault injected (``status``, ``reset``, ``lost_response``), if any."""
    delayed: float = 0.0
    """Seconds the request was held by ``delay`` rules."""


@dataclass(frozen=True)
class ProxyStats:
    """Counters since the proxy started (or since :meth:`FaultProxy.reset_stats`)."""

    connections: int
    requests: int
    by_method: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    """Statuses sent to the client (forwarded or injected)."""
    faults: dict[str, int] = field(default_factory=dict)
    """Faults injected, by kind (``delay`` included)."""
    upstream_errors: int = 0
    """Requests the proxy could not forward (upstream refused or broke the connection)."""

    @property
    def failures_injected(self) -> int:
        """Faults that made a request fail (everything but ``delay``)."""
        return sum(n for kind, n in self.faults.items() if kind in FAILING_KINDS)


class _Reset(Exception):
    """Raised inside a connection handler to end it with a TCP RST."""


class FaultProxy:
    """An HTTP reverse proxy on loopback in front of ``upstream``, injecting faults on demand.

    Args:
        upstream: ``http://host:port`` to forward to (e.g. ``EmbeddedS3.endpoint_url``).
        port: port to listen on; ``0`` (default) picks a free one.
        upstream_timeout: socket timeout towards the upstream, in seconds.

    Example:
        >>> with FaultProxy(s3.endpoint_url) as proxy:  # doctest: +SKIP
        ...     proxy.fail(1, kind="reset", method="PUT", path=r"/_delta_log/\\d+\\.json$")
        ...     env["AWS_ENDPOINT_URL"] = proxy.url
    """

    def __init__(self, upstream: str, port: int = 0, upstream_timeout: float = 60.0) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"upstream must be http://host:port, not {upstream!r}")
        self.upstream = (parsed.hostname, parsed.port or 80)
        self._port = port
        self.upstream_timeout = upstream_timeout
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._records: deque[RequestRecord] = deque(maxlen=_RECORDS_KEPT)
        self._connections = 0
        self._requests = 0
        self._by_method: Counter[str] = Counter()
        self._statuses: Counter[int] = Counter()
        self._faults: Counter[str] = Counter()
        self._upstream_errors = 0
        self._request_ids = itertools.count(1)
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._open: set[socket.socket] = set()
        self._stopping = threading.Event()

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("FaultProxy is not running; call start() first")
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: use it as ``AWS_ENDPOINT_URL``."""
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> FaultProxy:
        """Bind and start accepting connections; returns once the socket listens."""
        if self._listener is not None:
            raise RuntimeError("FaultProxy is already started")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, self._port))
        listener.listen(128)
        self._listener = listener
        self._stopping.clear()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"faultproxy-{self.port}", daemon=True
        )
        self._accept_thread.start()
        log.info("fault proxy %s → http://%s:%d", self.url, *self.upstream)
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection. Safe to call more than once."""
        self._stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
            self._accept_thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- fault control -------------------------------------------------------------------------

    def fail(
        self,
        times: int = 1,
        *,
        kind: FaultKind = "status",
        method: str | Iterable[str] | None = None,
        path: str | None = None,
        after: int = 0,
        every: int = 1,
        status: int = 503,
        code: str = "SlowDown",
    ) -> FaultRule:
        """Fail the next ``times`` matching requests (after letting ``after`` through)."""
        if kind not in FAILING_KINDS:
            raise ValueError(f"fail() takes a failing kind {sorted(FAILING_KINDS)}, not {kind!r}")
        return self.add(
            FaultRule(
                kind=kind,
                methods=_methods(method),
                path=_pattern(path),
                times=times,
                after=after,
                every=max(every, 1),
                status=status,
                code=code,
            )
        )

    def outage(
        self,
        seconds: float,
        *,
        kind: FaultKind = "status",
        method: str | Iterable[str] | None = None,
        path: str | None = None,
        after: int = 0,
        status: int = 503,
        code: str = "SlowDown",
    ) -> FaultRule:
        """Fail every matching request for ``seconds``: from now, or from the (after+1)-th match."""
        if kind not in FAILING_KINDS:
            raise ValueError(f"outage() takes a failing kind {sorted(FAILING_KINDS)}, not {kind!r}")
        return self.add(
            FaultRule(
                kind=kind,
                methods=_methods(method),
                path=_pattern(path),
                after=after,
                seconds=seconds,
                status=status,
                code=code,
                opened_at=time.monotonic() if after == 0 else None,
            )
        )

    def latency(
        self,
        ms: float,
        *,
        times: int | None = None,
        seconds: float | None = None,
        method: str | Iterable[str] | None = None,
        path: str | None = None,
        after: int = 0,
        every: int = 1,
    ) -> FaultRule:
        """Hold matching requests ``ms`` milliseconds before forwarding them (a latency spike)."""
        return self.add(
            FaultRule(
                kind="delay",
                methods=_methods(method),
                path=_pattern(path),
                times=times,
                after=after,
                every=max(every, 1),
                seconds=seconds,
                delay=ms / 1000.0,
                opened_at=time.monotonic() if after == 0 and seconds is not None else None,
            )
        )

    def add(self, rule: FaultRule) -> FaultRule:
        """Add a rule built by hand; rules are consulted in the order they were added."""
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: FaultRule) -> None:
        """Stop applying ``rule`` (its counters stay readable)."""
        with self._lock:
            rule.removed = True
            self._rules = [r for r in self._rules if r is not rule]

    def clear(self) -> None:
        """Remove every rule: from now on requests pass untouched."""
        with self._lock:
            for rule in self._rules:
                rule.removed = True
            self._rules = []

    # -- what happened -------------------------------------------------------------------------

    def stats(self) -> ProxyStats:
        """A snapshot of the counters."""
        with self._lock:
            return ProxyStats(
                connections=self._connections,
                requests=self._requests,
                by_method=dict(self._by_method),
                statuses=dict(self._statuses),
                faults=dict(self._faults),
                upstream_errors=self._upstream_errors,
            )

    def reset_stats(self) -> None:
        """Zero the counters and forget the request log (rules keep their own counters)."""
        with self._lock:
            self._connections = self._requests = self._upstream_errors = 0
            self._by_method.clear()
            self._statuses.clear()
            self._faults.clear()
            self._records.clear()

    def records(self) -> list[RequestRecord]:
        """The most recent requests (up to 20,000), oldest first."""
        with self._lock:
            return list(self._records)

    def count(
        self,
        method: str | Iterable[str] | None = None,
        path: str | None = None,
        predicate: Callable[[RequestRecord], bool] | None = None,
    ) -> int:
        """How many logged requests match ``method``/``path`` (and ``predicate``)."""
        probe = FaultRule(kind="delay", methods=_methods(method), path=_pattern(path))
        return sum(
            1
            for r in self.records()
            if probe.matches(r.method, r.target) and (predicate is None or predicate(r))
        )

    def wait_for(
        self,
        n: int,
        method: str | Iterable[str] | None = None,
        path: str | None = None,
        timeout: float = 60.0,
        poll: float = 0.02,
    ) -> bool:
        """Wait until at least ``n`` logged requests match; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        while self.count(method, path) < n:
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)
        return True

    # -- serving -------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._connections += 1
                self._open.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _decide(self, method: str, target: str) -> tuple[FaultRule | None, float]:
        """The failing rule that fires for this request (if any) and the total delay."""
        now = time.monotonic()
        failing: FaultRule | None = None
        delay = 0.0
        with self._lock:
            self._requests += 1
            self._by_method[method] += 1
            for rule in self._rules:
                if not rule.active(now) or not rule.matches(method, target):
                    continue
                if rule.kind == "delay":
                    if rule._fires(now):
                        delay += rule.delay
                        self._faults["delay"] += 1
                elif failing is None and rule._fires(now):
                    failing = rule
                    self._faults[rule.kind] += 1
        return failing, delay

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)
            if record.status is not None:
                self._statuses[record.status] += 1

    def _serve(self, client: socket.socket) -> None:
        reader = client.makefile("rb")
        # The connection's upstream connection, replaced by _exchange when it breaks.
        upstream_ref: list[_Upstream | None] = [None]
        try:
            while not self._stopping.is_set():
                head = _read_head(reader)
                if head is None or not self._exchange(client, reader, head, upstream_ref):
                    return
        except _Reset:
            _reset(client)
        except (OSError, ValueError) as exc:
            log.debug("fault proxy connection ended: %s", exc)
        finally:
            if upstream_ref[0] is not None:
                upstream_ref[0].close()
            with contextlib.suppress(OSError):
                reader.close()
            with contextlib.suppress(OSError):
                client.close()
            with self._lock:
                self._open.discard(client)

    def _exchange(
        self,
        client: socket.socket,
        reader: io.BufferedReader,
        head: _Head,
        upstream_ref: list[_Upstream | None],
    ) -> bool:
        """Handle one request on a client connection; returns whether to keep the connection."""
        at = time.time()
        target = urllib.parse.unquote(head.target)
        rule, delay = self._decide(head.method, target)
        fault = rule.kind if rule is not None else None

        def record(status: int | None) -> None:
            self._record(RequestRecord(at, head.method, target, status, fault, delay))

        if delay:
            time.sleep(delay)
        if rule is not None and rule.kind == "reset":
            record(None)
            raise _Reset
        expects_continue = head.header("expect").lower() == "100-continue"
        client_keep = head.keep_alive()
        if rule is not None and rule.kind == "status":
            # With Expect: 100-continue the client has not sent the body: answer and close.
            if not expects_continue:
                _copy_body(reader, None, head.framing(is_request=True))
            keep = client_keep and not expects_continue
            # Logged before answering, so a client that got its answer finds it in the log.
            record(rule.status)
            client.sendall(self._error_response(rule, head.method, keep))
            return keep
        if expects_continue:
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

        upstream = upstream_ref[0]
        if upstream is None or not upstream.usable():
            if upstream is not None:
                upstream.close()
            try:
                upstream = _Upstream.connect(self.upstream, self.upstream_timeout)
            except OSError as exc:
                upstream_ref[0] = None
                return self._upstream_failed(client, head, record, exc)
            upstream_ref[0] = upstream
        try:
            upstream.sock.sendall(head.raw_for_upstream())
            _copy_body(reader, upstream.sock, head.framing(is_request=True))
            response = _read_head(upstream.reader, skip_interim=True)
            if response is None:
                raise ConnectionError("upstream closed the connection without a response")
        except (OSError, ValueError) as exc:
            upstream.close()
            upstream_ref[0] = None
            return self._upstream_failed(client, head, record, exc)

        framing = response.framing(is_request=False, request_method=head.method)
        if rule is not None and rule.kind == "lost_response":
            # The upstream applied the request; read its answer so the upstream connection stays
            # usable, then make sure the client never hears it.
            _copy_body(upstream.reader, None, framing)
            if framing.until_close or not response.keep_alive():
                upstream.close()
                upstream_ref[0] = None
            record(None)
            raise _Reset
        record(response.status)
        client.sendall(response.raw)
        _copy_body(upstream.reader, client, framing)
        if framing.until_close or not response.keep_alive():
            upstream.close()
            upstream_ref[0] = None
            # A body delimited by close must end the client connection too.
            return False
        return client_keep

    def _upstream_failed(
        self,
        client: socket.socket,
        head: _Head,
        record: Callable[[int | None], None],
        exc: BaseException,
    ) -> bool:
        log.warning("fault proxy: upstream failed for %s %s: %s", head.method, head.target, exc)
        with self._lock:
            self._upstream_errors += 1
        record(502)
        with contextlib.suppress(OSError):
            client.sendall(_response(502, "BadGateway", str(exc), head.method, keep_alive=False))
        return False

    def _error_response(self, rule: FaultRule, method: str, keep_alive: bool) -> bytes:
        request_id = f"faultproxy-{next(self._request_ids)}"
        message = f"Injected by FaultProxy ({rule.kind} {rule.status} {rule.code})"
        return _response(rule.status, rule.code, message, method, keep_alive, request_id)


# -- HTTP plumbing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Framing:
    """How a message body ends: a length, chunked framing, the connection closing, or no body."""

    length: int = 0
    chunked: bool = False
    until_close: bool = False


@dataclass(frozen=True)
class _Head:
    """A request or response head: the start line and headers as received."""

    raw: bytes
    start: tuple[str, str, str]
    headers: list[tuple[str, str]]

    @property
    def method(self) -> str:
        return self.start[0]

    @property
    def target(self) -> str:
        return self.start[1]

    @property
    def status(self) -> int:
        return int(self.start[1])

    def header(self, name: str) -> str:
        for k, v in self.headers:
            if k.lower() == name:
                return v.strip()
        return ""

    def keep_alive(self) -> bool:
        # A request line ends with the version, a status line starts with it.
        version = self.start[0] if self.start[0].startswith("HTTP/") else self.start[2]
        tokens = {t.strip().lower() for t in self.header("connection").split(",")}
        if "close" in tokens:
            return False
        return version.upper() != "HTTP/1.0" or "keep-alive" in tokens

    def framing(self, *, is_request: bool, request_method: str = "") -> _Framing:
        if not is_request:
            code = self.status
            if request_method == "HEAD" or code in (204, 304) or 100 <= code < 200:
                return _Framing()
        if "chunked" in self.header("transfer-encoding").lower():
            return _Framing(chunked=True)
        length = self.header("content-length")
        if length:
            return _Framing(length=int(length))
        return _Framing(until_close=not is_request)

    def raw_for_upstream(self) -> bytes:
        """The request head with ``Expect`` dropped (the proxy answered it) and keep-alive on."""
        lines = [" ".join(self.start)]
        lines += [f"{k}: {v}" for k, v in self.headers if k.lower() not in _HOP_HEADERS]
        lines.append("Connection: keep-alive")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _read_head(reader: io.BufferedReader, skip_interim: bool = False) -> _Head | None:
    """Read one message head; ``None`` on a clean EOF before any byte of it."""
    while True:
        lines: list[bytes] = []
        size = 0
        while True:
            line = reader.readline(_MAX_HEAD_BYTES + 1)
            if not line:
                if lines:
                    raise ConnectionError("connection closed inside a message head")
                return None
            size += len(line)
            if size > _MAX_HEAD_BYTES:
                raise ValueError("message head too large")
            if line in (b"\r\n", b"\n"):
                if not lines:
                    continue  # tolerate stray CRLF between messages (RFC 9112 §2.2)
                break
            lines.append(line)
        raw = b"".join(lines) + b"\r\n"
        text = [ln.decode("latin-1").rstrip("\r\n") for ln in lines]
        parts = text[0].split(" ", 2)
        if len(parts) < 3:
            parts += [""] * (3 - len(parts))
        headers = []
        for ln in text[1:]:
            name, sep, value = ln.partition(":")
            if sep:
                headers.append((name.strip(), value.strip()))
        head = _Head(raw, (parts[0], parts[1], parts[2]), headers)
        if skip_interim and head.start[0].startswith("HTTP/") and head.status // 100 == 1:
            continue  # 100 Continue from the upstream: the proxy answered the client itself
        return head


def _copy_body(reader: io.BufferedReader, out: socket.socket | None, framing: _Framing) -> None:
    """Copy one body from ``reader`` to ``out`` (or discard it) exactly as framed."""
    if framing.chunked:
        while True:
            line = reader.readline(_MAX_HEAD_BYTES)
            if not line:
                raise ConnectionError("connection closed inside a chunked body")
            _send(out, line)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    trailer = reader.readline(_MAX_HEAD_BYTES)
                    if not trailer:
                        raise ConnectionError("connection closed inside chunked trailers")
                    _send(out, trailer)
                    if trailer in (b"\r\n", b"\n"):
                        return
            _copy_exact(reader, out, size)
            _send(out, reader.readline(_MAX_HEAD_BYTES))  # the CRLF after the chunk data
    elif framing.until_close:
        while data := reader.read1(_COPY_BYTES):
            _send(out, data)
    else:
        _copy_exact(reader, out, framing.length)


def _copy_exact(reader: io.BufferedReader, out: socket.socket | None, n: int) -> None:
    while n > 0:
        data = reader.read1(min(n, _COPY_BYTES))
        if not data:
            raise ConnectionError(f"connection closed with {n} body bytes missing")
        _send(out, data)
        n -= len(data)


def _send(out: socket.socket | None, data: bytes) -> None:
    if out is not None and data:
        out.sendall(data)


def _response(
    status: int,
    code: str,
    message: str,
    method: str,
    keep_alive: bool,
    request_id: str = "faultproxy",
) -> bytes:
    """An S3-style XML error response."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{_xml_escape(message)}</Message>"
        f"<RequestId>{request_id}</RequestId></Error>"
    ).encode()
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        "Content-Type: application/xml",
        f"Content-Length: {len(body)}",
        f"x-amz-request-id: {request_id}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
    ]
    raw = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
    return raw if method == "HEAD" else raw + body


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0) rather than a FIN: the peer sees a reset."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _Upstream:
    """One kept-alive connection to the upstream server."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")

    @classmethod
    def connect(cls, address: tuple[str, int], timeout: float) -> _Upstream:
        sock = socket.create_connection(address, timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock)

    def usable(self) -> bool:
        """False when the upstream closed the idle connection (readable at EOF, or broken)."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if not readable:
                return True
            return bool(self.sock.recv(1, socket.MSG_PEEK))
        except OSError:
            return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.reader.close()
        with contextlib.suppress(OSError):
            self.sock.close()


def _methods(method: str | Iterable[str] | None) -> frozenset[str] | None:
    if method is None:
        return None
    if isinstance(method, str):
        return frozenset({method.upper()})
    return frozenset(m.upper() for m in method)


def _pattern(path: str | None) -> re.Pattern[str] | None:
    return re.compile(path) if path is not None else None
