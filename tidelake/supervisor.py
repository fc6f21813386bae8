"""Process supervision for the local stack: children in their own process groups, stopped in
order, each with its own signal and grace, and nothing they leave behind survives.

Used by ``tidelake dev`` (tidelake.devstack): the simulator, the ingestion worker, Dagster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


CLEAN_EXIT_CODES = frozenset({0, 130, 143, -signal.SIGINT, -signal.SIGTERM})
"""Exit statuses of a child that stopped because it was asked to (0, or by SIGINT/SIGTERM)."""
DAGSTER_STOP_GRACE_SECONDS = 150.0
"""``dagster dev`` waits up to 60 s for its webserver, then 60 s for its daemon, before kills."""
WORKER_STOP_SLACK_SECONDS = 60.0
"""Beyond the longest batch (``TIDELAKE_MAX_BATCH_SECONDS``): its commits and checks."""
LEFTOVER_GRACE_SECONDS = 10.0
"""How long processes a child left behind in its group get between SIGTERM and SIGKILL."""


@dataclass(frozen=True)
class Child:
    """One process of the local stack: its command, how it is asked to stop, how long it gets."""

    name: str
    argv: tuple[str, ...]
    stop_signal: int = signal.SIGTERM
    grace_seconds: float = 30.0


@dataclass(frozen=True)
class Stopped:
    """How one child ended: its exit status, and whether it had to be killed."""

    name: str
    pid: int
    returncode: int
    killed: bool

    @property
    def clean(self) -> bool:
        return not self.killed and self.returncode in CLEAN_EXIT_CODES


class Supervisor:
    """Starts children in process groups of their own and stops them, groups included, in order.

    Own groups: a Ctrl-C in the terminal reaches only ``tidelake dev``, which then stops the
    children one after the other instead of all at once (the worker must not lose the broker
    under its last batch). Stopping a child sends its stop signal to the child, waits its grace,
    then SIGTERMs whatever it left in its group (a code server, a run process) and SIGKILLs what
    still stands. Nothing outside these groups is ever signalled.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        cwd: Path | None = None,
        poll_seconds: float = 0.2,
        leftover_grace_seconds: float = LEFTOVER_GRACE_SECONDS,
    ) -> None:
        self.env = dict(env)
        self.cwd = cwd
        self.poll_seconds = poll_seconds
        self.leftover_grace_seconds = leftover_grace_seconds
        self.running: list[tuple[Child, subprocess.Popen[bytes]]] = []
        self._hurry = threading.Event()

    def start(self, child: Child) -> int:
        """Start ``child``; return its pid (= its process group id)."""
        proc = subprocess.Popen(
            list(child.argv),
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.running.append((child, proc))
        log.info("started %s (pid %d): %s", child.name, proc.pid, " ".join(child.argv))
        return proc.pid

    def pids(self) -> dict[str, int]:
        return {child.name: proc.pid for child, proc in self.running}

    def wait_any(self, stop: threading.Event) -> tuple[str, int] | None:
        """Block until a child exits (its name and status) or ``stop`` is set (None)."""
        while not stop.is_set():
            for child, proc in self.running:
                code = proc.poll()
                if code is not None:
                    return child.name, code
            stop.wait(self.poll_seconds)
        return None

    def hurry(self) -> None:
        """Stop waiting for graceful exits: whatever is still running is killed at once."""
        self._hurry.set()

    def stop_all(self) -> list[Stopped]:
        """Stop every child in start order (see the class docstring)."""
        return [self._stop(child, proc) for child, proc in self.running]

    def _stop(self, child: Child, proc: subprocess.Popen[bytes]) -> Stopped:
        killed = False
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, child.stop_signal)
            if not self._wait(lambda: proc.poll() is not None, child.grace_seconds):
                log.warning("%s (pid %d) did not stop in time; killing it", child.name, proc.pid)
                _signal_group(proc.pid, signal.SIGKILL)
                killed = True
        code = proc.wait()
        if _group_alive(proc.pid):
            _signal_group(proc.pid, signal.SIGTERM)
            if not self._wait(lambda: not _group_alive(proc.pid), self.leftover_grace_seconds):
                log.warning("processes left by %s ignored SIGTERM; killing them", child.name)
                _signal_group(proc.pid, signal.SIGKILL)
                killed = True
                self._wait(lambda: not _group_alive(proc.pid), 5.0, hurry=False)
        return Stopped(child.name, proc.pid, code, killed)

    def _wait(self, done: Callable[[], bool], timeout: float, hurry: bool = True) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() >= deadline or (hurry and self._hurry.is_set()):
                return False
            time.sleep(min(self.poll_seconds, 0.05))
        return True


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether any process is left in the group (its leader may already be gone)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
