"""An S3 API server on loopback (moto), for tests and the local dev stack.

:class:`EmbeddedS3` runs moto's S3 in a thread of the current process; no subprocess, no Docker.
It hands out settings that reach it only through explicit configuration: :meth:`lake_settings`
for in-process code and :meth:`env` for subprocesses. Credentials are dummies; moto accepts any.

Standalone: ``python -m tidelake.s3server --port 9000 --bucket tidelake`` serves until Ctrl-C and
logs the variables to export.

All ``EmbeddedS3`` instances in one process share moto's in-memory state (moto keeps it global), so
tests isolate themselves by bucket name, not by server.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
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
    """moto's S3 API served from a background thread on ``host:port``.

    Args:
        port: TCP port; ``0`` (default) lets the OS pick a free one.
        host: interface to bind; loopback unless you mean to expose it.
        quiet: silence werkzeug's per-request access log (only if nobody configured that logger).
    """

    def __init__(self, port: int = 0, host: str = LOOPBACK, quiet: bool = True) -> None:
        self._port = port
        self._host = host
        self._quiet = quiet
        self._server: Any = None
        self._address: tuple[str, int] | None = None

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>`` of the running server."""
        if self._address is None:
            raise RuntimeError("EmbeddedS3 is not running; call start() first")
        host, port = self._address
        return f"http://{host}:{port}"

    def start(self) -> EmbeddedS3:
        """Start serving; returns once the socket is bound."""
        if self._server is not None:
            raise RuntimeError("EmbeddedS3 is already started")
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

    def stop(self) -> None:
        """Stop serving. Safe to call more than once."""
        server, self._server = self._server, None
        self._address = None
        if server is not None:
            server.stop()

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
    with EmbeddedS3(port=args.port, host=args.host) as s3:
        for bucket in args.bucket:
            s3.create_bucket(bucket)
        env = s3.env(args.bucket[0] if args.bucket else "tidelake", args.prefix)
        logger.info("export %s", " ".join(f"{k}={v}" for k, v in env.items()))
        while not stop.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
