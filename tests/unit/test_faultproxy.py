"""FaultProxy against a tiny local HTTP/1.1 server: streaming, keep-alive, and every fault kind.

The upstream stores PUT bodies by path and serves them back, answers ``/chunked`` with a chunked
body and ``/close`` with a body delimited by closing the connection, and counts the requests and
connections it saw, so each test can tell what reached the upstream and what the proxy kept
from it.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tidelake.broker import free_port
from tidelake.testing import FaultProxy


class Upstream(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.bodies: dict[str, bytes] = {}
        self.seen: list[tuple[str, str]] = []
        self.connections = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Upstream

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _seen(self) -> None:
        with self.server.lock:
            self.server.seen.append((self.command, self.path))

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n"):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def _reply(self, status: int, body: bytes, head_only: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def do_PUT(self) -> None:
        self._seen()
        body = self._body()
        with self.server.lock:
            self.server.bodies[self.path] = body
        self._reply(200, hashlib.sha256(body).hexdigest().encode())

    def do_GET(self) -> None:
        self._seen()
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"alpha-", b"beta-" * 5000, b"gamma"):
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until-close " * 1000)
            self.close_connection = True
        elif self.path in self.server.bodies:
            self._reply(200, self.server.bodies[self.path])
        else:
            self._reply(404, b"missing")

    def do_HEAD(self) -> None:
        self._seen()
        body = self.server.bodies.get(self.path)
        self._reply(200 if body is not None else 404, body or b"", head_only=True)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(upstream: Upstream) -> Iterator[FaultProxy]:
    with FaultProxy(upstream.url) as p:
        yield p


def connect(proxy: FaultProxy) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)


def request(
    conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None
) -> tuple[int, bytes]:
    conn.request(method, path, body=body)
    response = conn.getresponse()
    return response.status, response.read()


def test_puts_gets_and_heads_pass_through_one_kept_alive_connection_with_bodies_intact(
    proxy: FaultProxy, upstream: Upstream
) -> None:
    body = os.urandom(3 * 1024 * 1024 + 17)
    conn = connect(proxy)

    status, digest = request(conn, "PUT", "/bucket/big.parquet", body)
    assert (status, digest) == (200, hashlib.sha256(body).hexdigest().encode())
    assert request(conn, "GET", "/bucket/big.parquet") == (200, body)
    conn.request("HEAD", "/bucket/big.parquet")
    head = conn.getresponse()
    assert head.status == 200 and head.getheader("Content-Length") == str(len(body))
    assert head.read() == b""
    assert request(conn, "GET", "/bucket/absent") == (404, b"missing")

    stats = proxy.stats()
    assert stats.connections == 1 and upstream.connections == 1
    assert stats.requests == 4 and stats.by_method == {"PUT": 1, "GET": 2, "HEAD": 1}
    assert stats.statuses == {200: 3, 404: 1} and stats.faults == {}


def test_chunked_request_and_response_bodies_stream_through_and_keep_framing(
    proxy: FaultProxy, upstream: Upstream
) -> None:
    parts = [b"x" * 70_000, b"", b"y" * 3, b"z" * 200_000]
    conn = connect(proxy)

    conn.request("PUT", "/bucket/chunked-put", body=iter(parts), encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 200 and response.read()
    assert upstream.bodies["/bucket/chunked-put"] == b"".join(parts)
    status, body = request(conn, "GET", "/chunked")
    assert status == 200 and body == b"alpha-" + b"beta-" * 5000 + b"gamma"
    # The same connection still works: the proxy found the end of both chunked bodies.
    assert request(conn, "GET", "/bucket/chunked-put") == (200, b"".join(parts))
    assert proxy.stats().connections == 1


def test_a_body_delimited_by_close_reaches_the_client_whole_and_ends_the_connection(
    proxy: FaultProxy,
) -> None:
    conn = connect(proxy)

    status, body = request(conn, "GET", "/close")

    assert status == 200 and body == b"until-close " * 1000
    assert request(conn, "GET", "/bucket/absent")[0] == 404  # http.client reconnects
    assert proxy.stats().connections == 2


def test_fail_answers_503_slowdown_to_the_next_n_matching_requests_without_asking_upstream(
    proxy: FaultProxy, upstream: Upstream
) -> None:
    rule = proxy.fail(2, method="PUT", path=r"^/bucket/_delta_log/\d+\.json$")
    conn = connect(proxy)

    assert request(conn, "PUT", "/bucket/data.parquet", b"d")[0] == 200
    assert request(conn, "GET", "/bucket/_delta_log/00001.json")[0] == 404
    first = request(conn, "PUT", "/bucket/_delta_log/00001.json", b"commit")
    second = request(conn, "PUT", "/bucket/_delta_log/00001.json", b"commit")
    third = request(conn, "PUT", "/bucket/_delta_log/00001.json", b"commit")

    assert first[0] == second[0] == 503
    assert b"<Code>SlowDown</Code>" in first[1]
    assert third[0] == 200
    assert upstream.seen.count(("PUT", "/bucket/_delta_log/00001.json")) == 1
    assert rule.injected == 2 and rule.matched == 2 and rule.done
    stats = proxy.stats()
    assert stats.faults == {"status": 2} and stats.failures_injected == 2
    assert stats.statuses[503] == 2
    assert stats.connections == 1, "a drained request body keeps the connection usable"


def test_a_status_fault_can_look_like_any_s3_error(proxy: FaultProxy) -> None:
    proxy.fail(1, method="PUT", status=403, code="AccessDenied")

    status, body = request(connect(proxy), "PUT", "/bucket/k", b"v")

    assert status == 403 and b"<Code>AccessDenied</Code>" in body


def test_after_and_every_pick_which_matching_requests_fail(proxy: FaultProxy) -> None:
    proxy.fail(2, method="GET", path="^/bucket/", after=2, every=3)
    conn = connect(proxy)

    statuses = [request(conn, "GET", "/bucket/absent")[0] for _ in range(8)]

    # Matches 1-2 pass (after=2), then every third one fails: matches 3 and 6; then the count
    # of two is used up.
    assert statuses == [404, 404, 503, 404, 404, 503, 404, 404]


def test_an_outage_fails_every_matching_request_until_its_window_closes(
    proxy: FaultProxy, upstream: Upstream
) -> None:
    rule = proxy.outage(0.3, path="^/bucket/")
    conn = connect(proxy)

    during = [request(conn, "GET", "/bucket/absent")[0] for _ in range(3)]
    assert request(conn, "GET", "/chunked")[0] == 200, "outside the pattern: not affected"
    while not rule.done:
        time.sleep(0.02)
    after = request(conn, "GET", "/bucket/absent")[0]

    assert during == [503, 503, 503] and after == 404
    assert rule.injected == 3
    assert upstream.seen.count(("GET", "/bucket/absent")) == 1


def test_an_outage_with_after_opens_at_the_first_fault_not_when_it_is_added(
    proxy: FaultProxy,
) -> None:
    rule = proxy.outage(60, method="PUT", after=1)
    conn = connect(proxy)

    assert rule.opened_at is None
    assert request(conn, "PUT", "/bucket/a", b"1")[0] == 200
    assert [request(conn, "PUT", "/bucket/a", b"1")[0] for _ in range(2)] == [503, 503]
    assert rule.opened_at is not None and not rule.done
    proxy.remove(rule)
    assert rule.done
    assert request(conn, "PUT", "/bucket/a", b"1")[0] == 200


def test_a_reset_cuts_the_connection_before_the_upstream_sees_the_request(
    proxy: FaultProxy, upstream: Upstream
) -> None:
    proxy.fail(1, kind="reset", method="PUT")
    conn = connect(proxy)

    with pytest.raises(ConnectionError):
        request(conn, "PUT", "/bucket/_delta_log/00001.json", b"commit")

    assert ("PUT", "/bucket/_delta_log/00001.json") not in upstream.seen
    assert proxy.stats().faults == {"reset": 1}
    record = proxy.records()[-1]
    assert (record.status, record.fault) == (None, "reset")
    conn.close()
    assert request(conn, "PUT", "/bucket/_delta_log/00001.json", b"commit")[0] == 200


def test_a_lost_response_is_applied_upstream_but_never_reaches_the_client(
    proxy: FaultProxy, upstream: Upstream
) -> None:
    proxy.fail(1, kind="lost_response", method="PUT", path="_delta_log")
    conn = connect(proxy)

    with pytest.raises(ConnectionError):
        request(conn, "PUT", "/bucket/_delta_log/00001.json", b"commit")

    assert upstream.bodies["/bucket/_delta_log/00001.json"] == b"commit"
    assert proxy.stats().faults == {"lost_response": 1}
    conn.close()
    assert request(conn, "GET", "/bucket/_delta_log/00001.json") == (200, b"commit")


def test_latency_holds_matching_requests_before_forwarding_them(proxy: FaultProxy) -> None:
    rule = proxy.latency(250, times=1, method="GET")
    conn = connect(proxy)

    t0 = time.monotonic()
    assert request(conn, "GET", "/bucket/absent")[0] == 404
    held = time.monotonic() - t0
    assert request(conn, "GET", "/bucket/absent")[0] == 404

    assert held >= 0.25  # a lower bound only: sleeping never takes less than asked
    assert rule.injected == 1 and proxy.stats().faults == {"delay": 1}
    assert [r.delayed for r in proxy.records()] == [0.25, 0.0]


def test_expect_100_continue_is_answered_by_the_proxy_and_refused_by_a_status_fault(
    proxy: FaultProxy, upstream: Upstream
) -> None:
    def put_expecting_continue(path: str) -> tuple[bytes, bytes]:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(
                f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                "Expect: 100-continue\r\n\r\n".encode()
            )
            interim = sock.recv(4096)
            if interim.startswith(b"HTTP/1.1 100"):
                sock.sendall(b"data")
                final = b""
                while b"\r\n\r\n" not in final:
                    final += sock.recv(4096)
                return interim, final
            return b"", interim

    interim, final = put_expecting_continue("/bucket/expect")
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert final.startswith(b"HTTP/1.1 200") and upstream.bodies["/bucket/expect"] == b"data"

    proxy.fail(1, method="PUT")
    interim, final = put_expecting_continue("/bucket/expect-refused")
    assert interim == b"" and final.startswith(b"HTTP/1.1 503")
    assert b"Connection: close" in final
    assert "/bucket/expect-refused" not in upstream.bodies


def test_count_and_wait_for_see_the_requests_the_proxy_logged(proxy: FaultProxy) -> None:
    conn = connect(proxy)
    request(conn, "PUT", "/bucket/_delta_log/00001.json", b"c")
    request(conn, "PUT", "/bucket/part-1.parquet", b"p")
    request(conn, "GET", "/bucket/_delta_log/00001.json")

    assert proxy.count("PUT") == 2
    assert proxy.count(path=r"_delta_log/\d+\.json") == 2
    assert proxy.count("PUT", r"\.parquet$") == 1
    assert proxy.wait_for(2, "PUT", timeout=1)
    assert not proxy.wait_for(3, "PUT", timeout=0.05)
    proxy.reset_stats()
    assert proxy.stats().requests == 0 and proxy.records() == []


def test_clear_removes_every_rule(proxy: FaultProxy) -> None:
    rules = [proxy.fail(5), proxy.outage(60), proxy.latency(1000)]

    proxy.clear()

    assert request(connect(proxy), "GET", "/bucket/absent")[0] == 404
    assert all(r.done and r.injected == 0 for r in rules)


def test_an_unreachable_upstream_is_a_502_and_an_upstream_error() -> None:
    with FaultProxy(f"http://127.0.0.1:{free_port()}") as proxy:
        status, _ = request(connect(proxy), "GET", "/bucket/x")
        assert status == 502
        assert proxy.stats().upstream_errors == 1


def test_fail_refuses_a_kind_that_does_not_fail_and_the_upstream_must_be_http() -> None:
    with pytest.raises(ValueError, match="http://host:port"):
        FaultProxy("https://example.com")
    with FaultProxy("http://127.0.0.1:9") as proxy, pytest.raises(ValueError, match="delay"):
        proxy.fail(1, kind="delay")
