"""An S3 API server on loopback (moto), for tests and the local dev stack.

:class:`EmbeddedS3` runs moto's S3 in a child process by default (``in_process=True``: a thread of
the current process); no Docker.

Why a process: deltalake 1.6 keeps the GIL during some of its blocking S3 calls (listing the log
for ``history()``, measured: the call waits out its 180 s timeout), so a server on a thread of
the same process cannot answer it. A real S3 is never in the caller's process either.

It hands out settings that reach it only through explicit configuration: :meth:`lake_settings`
for in-process code and :meth:`env` for subprocesses. Credentials are dummies; moto accepts any.

Standalone: ``python -m tidelake.s3server --port 9000 --bucket tidelake`` serves until Ctrl-C and
logs the variables to export.

In-process instances share moto's in-memory state (moto keeps it global), and tests share one
server per session, so tests isolate themselves by bucket name, not by server.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType, TracebackType
from typing import Any

from tidelake.settings import LakeSettings

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
REGION = "us-east-1"
DUMMY_ACCESS_KEY_ID = "tidelake-embedded"
DUMMY_SECRET_ACCESS_KEY = "tidelake-embedded-secret"


class EmbeddedS3:
    """moto's S3 API served on ``host:port`` by a child process (or a background thread).

    Args:
        port: TCP port; ``0`` (default) lets the OS pick a free one.
        host: interface to bind; loopback unless you mean to expose it.
        quiet: silence werkzeug's per-request access log (only if nobody configured that logger).
        in_process: serve from a thread of this process instead of a child process (only for
            callers that never call deltalake in this process; see the module docstring).
        startup_timeout: seconds to wait for the child to answer.
    """

    def __init__(
        self,
        port: int = 0,
        host: str = LOOPBACK,
        quiet: bool = True,
        in_process: bool = False,
        startup_timeout: float = 30.0,
    ) -> None:
        self._port = port
        self._host = host
        self._quiet = quiet
        self._in_process = in_process
        self._startup_timeout = startup_timeout
        self._server: Any = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._address: tuple[str, int] | None = None

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>`` of the running server."""
        if self._address is None:
            raise RuntimeError("EmbeddedS3 is not running; call start() first")
        host, port = self._address
        return f"http://{host}:{port}"

    def start(self) -> EmbeddedS3:
        """Start serving; returns once the server answers."""
        if self._server is not None or self._proc is not None:
            raise RuntimeError("EmbeddedS3 is already started")
        if not self._in_process:
            return self._start_process()
        # Imported here: moto is heavy and only needed when a server actually runs.
        from moto.server import ThreadedMotoServer

        if self._quiet:
            access_log = logging.getLogger("werkzeug")
            if access_log.level == logging.NOTSET:
                access_log.setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address=self._host, port=self._port, verbose=False)
        server.start()
        self._server = server
        self._address = server.get_host_and_port()
        logger.info("embedded S3 API at %s", self.endpoint_url)
        return self

    def _start_process(self) -> EmbeddedS3:
        from tidelake.broker import free_port

        port = self._port or free_port(self._host)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tidelake.s3server", "--host", self._host, "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        atexit.register(self.stop)
        self._address = (self._host, port)
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            with contextlib.suppress(Exception):
                self.client().list_buckets()
                logger.info("embedded S3 API at %s (pid %d)", self.endpoint_url, self._proc.pid)
                return self
            time.sleep(0.1)
        code = self._proc.poll()
        self.stop()
        raise RuntimeError(
            f"the S3 API server did not answer on {self._host}:{port} within "
            f"{self._startup_timeout:.0f} s" + (f" (it exited with {code})" if code else "")
        )

    def stop(self) -> None:
        """Stop serving. Safe to call more than once."""
        server, self._server = self._server, None
        proc, self._proc = self._proc, None
        self._address = None
        if server is not None:
            server.stop()
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def __enter__(self) -> EmbeddedS3:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def client(self) -> Any:
        """A boto3 S3 client for this server (dummy credentials, never the ambient ones)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=DUMMY_ACCESS_KEY_ID,
            aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY,
        )

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` (3 to 63 lowercase characters); an existing one is fine."""
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=name)

    def lake_settings(self, bucket: str, prefix: str = "lake") -> LakeSettings:
        """Settings for a lake at ``s3://bucket/prefix`` on this server (bucket not created)."""
        return LakeSettings(
            uri=_lake_uri(bucket, prefix),
            aws_region=REGION,
            aws_endpoint_url=self.endpoint_url,
            aws_access_key_id=DUMMY_ACCESS_KEY_ID,
            aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY,
            aws_allow_http=True,
        )

    def env(self, bucket: str, prefix: str = "lake") -> dict[str, str]:
        """``LAKE_URI`` and ``AWS_*`` variables that point a subprocess at this server."""
        return {
            "LAKE_URI": _lake_uri(bucket, prefix),
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_ACCESS_KEY,
        }


def _lake_uri(bucket: str, prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the S3 API until SIGINT/SIGTERM; log the environment that points at it."""
    parser = argparse.ArgumentParser(
        prog="python -m tidelake.s3server", description="S3 API server (moto) on loopback."
    )
    parser.add_argument("--host", default=LOOPBACK, help="interface to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: any free port)")
    parser.add_argument("--bucket", action="append", default=[], help="bucket to create (repeat)")
    parser.add_argument("--prefix", default="lake", help="lake prefix for the printed LAKE_URI")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with EmbeddedS3(port=args.port, host=args.host, in_process=True) as s3:
        for bucket in args.bucket:
            s3.create_bucket(bucket)
        env = s3.env(args.bucket[0] if args.bucket else "tidelake", args.prefix)
        logger.info("export %s", " ".join(f"{k}={v}" for k, v in env.items()))
        while not stop.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
