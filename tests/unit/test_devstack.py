"""The dev stack: lake hygiene (an ephemeral broker must never feed a lake with older offsets),
which processes each ingestion model starts, and how they are stopped."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tidelake.cli import build_parser
from tidelake.devstack import (
    EMBEDDED_MARKER,
    archive_embedded_lake,
    child_env,
    stack_children,
    workspace_file,
)
from tidelake.settings import ConfigError
from tidelake.supervisor import Child, Supervisor


def test_a_lake_fed_by_an_earlier_embedded_session_is_moved_aside_not_deleted(
    tmp_path: Path,
) -> None:
    lake = tmp_path / "lake"
    (lake / "bronze").mkdir(parents=True)
    (lake / EMBEDDED_MARKER).write_text("old session")
    (lake / "bronze" / "data.parquet").write_bytes(b"x")
    moved = archive_embedded_lake(lake, state_dir=tmp_path / "state")
    assert moved is not None and not lake.exists()
    assert (moved / "bronze" / "data.parquet").read_bytes() == b"x"


def test_a_lake_without_the_marker_is_left_alone(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    (lake / "bronze").mkdir(parents=True)
    assert archive_embedded_lake(lake, state_dir=tmp_path / "state") is None
    assert (lake / "bronze").exists()


def test_the_cli_offers_every_documented_command() -> None:
    parser = build_parser()
    for command in ("simulate", "ingest", "validate", "dev", "demo", "broker"):
        assert parser.parse_args([command]).command == command


# -- which processes a stack runs --------------------------------------------------------------

WORKSPACE = Path("/repo/workspace.yaml")


def _names(children: list[Child]) -> list[str]:
    return [c.name for c in children]


def test_the_worker_model_runs_the_ingestion_worker_before_dagster_dev() -> None:
    children = stack_children(ingest_model="worker", headless=False, workspace=WORKSPACE)

    assert _names(children) == ["worker", "dagster dev"]
    worker = children[0]
    assert worker.argv[1:] == ("-m", "tidelake.cli", "ingest", "--follow")
    assert worker.stop_signal == signal.SIGTERM


@pytest.mark.parametrize("model", ["runs", "tick"])
def test_the_run_models_start_no_worker_because_the_sensors_launch_runs(model: str) -> None:
    assert _names(stack_children(ingest_model=model, headless=False, workspace=WORKSPACE)) == [
        "dagster dev"
    ]
    assert _names(stack_children(ingest_model=model, headless=True, workspace=WORKSPACE)) == [
        "dagster-daemon"
    ]


def test_headless_runs_the_daemon_on_the_workspace_instead_of_dagster_dev() -> None:
    children = stack_children(ingest_model="worker", headless=True, workspace=WORKSPACE)

    assert _names(children) == ["worker", "dagster-daemon"]
    daemon = children[1].argv
    assert Path(daemon[0]).name == "dagster-daemon"
    assert daemon[1:] == ("run", "-w", str(WORKSPACE))
    assert not any("webserver" in part or part == "dev" for part in daemon)


def test_dagster_dev_serves_the_ui_on_the_requested_host_and_port() -> None:
    (_, dev) = stack_children(
        ingest_model="worker", headless=False, workspace=WORKSPACE, host="0.0.0.0", port=3111
    )

    assert dev.argv[1:] == (
        "-m", "dagster", "dev", "-w", str(WORKSPACE), "-h", "0.0.0.0", "-p", "3111"
    )  # fmt: skip
    assert dev.stop_signal == signal.SIGINT


def test_the_worker_gets_longer_than_its_longest_batch_to_stop() -> None:
    (worker, _) = stack_children(
        ingest_model="worker", headless=True, workspace=WORKSPACE, worker_grace_seconds=95.0
    )

    assert worker.grace_seconds == 95.0


def test_children_share_the_broker_lake_and_dagster_home_the_stack_chose(tmp_path: Path) -> None:
    base = {"PATH": "/bin", "KAFKA_BOOTSTRAP_SERVERS": "", "TIDELAKE_TOPIC_PREFIX": "t1."}
    stack_env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "LAKE_URI": "/abs/lake"}

    env = child_env(base, stack_env, tmp_path / "home", "worker")

    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:9"
    assert env["LAKE_URI"] == "/abs/lake"
    assert env["TIDELAKE_TOPIC_PREFIX"] == "t1."
    assert env["DAGSTER_HOME"] == str(tmp_path / "home")
    assert env["TIDELAKE_INGEST_MODEL"] == "worker"
    assert env["TIDELAKE_ENV"] == "local"
    assert env["PATH"] == "/bin"


def test_an_explicit_environment_is_kept_and_the_model_is_the_one_started(tmp_path: Path) -> None:
    base = {"TIDELAKE_ENV": "test", "TIDELAKE_INGEST_MODEL": " Tick "}

    env = child_env(base, {}, tmp_path, "tick")

    assert env["TIDELAKE_ENV"] == "test"
    assert env["TIDELAKE_INGEST_MODEL"] == "tick"


def test_headless_and_no_simulator_are_independent_flags() -> None:
    parser = build_parser()

    plain = parser.parse_args(["dev"])
    headless = parser.parse_args(["dev", "--headless"])
    quiet = parser.parse_args(["dev", "--no-simulator"])
    both = parser.parse_args(["dev", "--no-simulator", "--headless"])

    assert (plain.headless, plain.no_simulator) == (False, False)
    assert (headless.headless, headless.no_simulator) == (True, False)
    assert (quiet.headless, quiet.no_simulator) == (False, True)
    assert (both.headless, both.no_simulator) == (True, True)


def test_the_stack_refuses_to_start_outside_a_code_location(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"workspace\.yaml"):
        workspace_file(tmp_path)
    (tmp_path / "workspace.yaml").write_text("load_from: []\n")
    assert workspace_file(tmp_path) == (tmp_path / "workspace.yaml").resolve()


# -- the supervisor, with real processes -------------------------------------------------------

# A child that logs the signal it got, takes `delay` seconds to stop, then exits 0.
_GRACEFUL = """
import signal, sys, time
name, log, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
def stop(signum, frame):
    time.sleep(delay)
    with open(log, "a") as f:
        f.write(f"{name} stopped by {signal.Signals(signum).name}\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
with open(log, "a") as f:
    f.write(f"{name} ready\\n")
while True:
    time.sleep(0.05)
"""


def _child(
    name: str, log: Path, delay: float = 0.0, sig: int = signal.SIGTERM, grace: float = 10.0
) -> Child:
    return Child(name, (sys.executable, "-c", _GRACEFUL, name, str(log), str(delay)), sig, grace)


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) is not alive.
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _ready(log: Path, *names: str) -> Callable[[], bool]:
    return lambda: log.exists() and all(f"{n} ready" in log.read_text() for n in names)


def test_children_stop_one_after_the_other_in_start_order_each_by_its_own_signal(
    tmp_path: Path,
) -> None:
    log = tmp_path / "log"
    supervisor = Supervisor(os.environ)
    supervisor.start(_child("worker", log, delay=0.5, sig=signal.SIGTERM))
    supervisor.start(_child("dagster", log, sig=signal.SIGINT))
    _wait_for(_ready(log, "worker", "dagster"))

    stopped = supervisor.stop_all()

    lines = log.read_text().splitlines()[2:]
    # The slow worker finished before dagster was even asked: sequential, not all at once.
    assert lines == ["worker stopped by SIGTERM", "dagster stopped by SIGINT"]
    assert [(s.name, s.returncode, s.killed, s.clean) for s in stopped] == [
        ("worker", 0, False, True),
        ("dagster", 0, False, True),
    ]


def test_a_child_that_ignores_its_stop_signal_is_killed_after_its_grace(tmp_path: Path) -> None:
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    supervisor = Supervisor(os.environ)
    pid = supervisor.start(Child("stubborn", (sys.executable, "-c", stubborn), grace_seconds=0.5))
    time.sleep(0.3)  # let it install the handler

    (stopped,) = supervisor.stop_all()

    assert stopped.killed and not stopped.clean
    assert stopped.returncode == -signal.SIGKILL
    assert not _alive(pid)


def test_processes_a_child_leaves_behind_in_its_group_are_stopped_too(tmp_path: Path) -> None:
    grandchild_pid = tmp_path / "grandchild.pid"
    # Like a daemon whose code server outlives it: the parent exits at once on SIGTERM.
    # The parent resets SIGTERM itself: once in a fresh-clone CI run it ignored SIGTERM for the
    # whole 30 s grace (inherited from the test process, whose state earlier tests may change),
    # which is not what this test is about.
    parent = (
        "import signal, subprocess, sys, time, pathlib;"
        "signal.signal(signal.SIGTERM, signal.SIG_DFL);"
        "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM});"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f"pathlib.Path({str(grandchild_pid)!r}).write_text(str(p.pid));"
        "time.sleep(60)"
    )
    supervisor = Supervisor(os.environ, leftover_grace_seconds=5.0)
    supervisor.start(Child("daemon", (sys.executable, "-c", parent)))
    _wait_for(grandchild_pid.exists)
    leftover = int(grandchild_pid.read_text())

    (stopped,) = supervisor.stop_all()

    assert stopped.returncode == -signal.SIGTERM and stopped.clean
    _wait_for(lambda: not _alive(leftover))


def test_wait_any_reports_the_child_that_exited_on_its_own(tmp_path: Path) -> None:
    log = tmp_path / "log"
    supervisor = Supervisor(os.environ, poll_seconds=0.05)
    supervisor.start(_child("dagster", log))
    supervisor.start(Child("worker", (sys.executable, "-c", "raise SystemExit(3)")))

    assert supervisor.wait_any(threading.Event()) == ("worker", 3)
    supervisor.stop_all()


def test_wait_any_returns_nothing_once_a_stop_is_requested(tmp_path: Path) -> None:
    supervisor = Supervisor(os.environ, poll_seconds=0.05)
    supervisor.start(_child("worker", tmp_path / "log"))
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()

    assert supervisor.wait_any(stop) is None
    assert all(s.clean for s in supervisor.stop_all())


def test_a_second_signal_kills_what_is_still_stopping(tmp_path: Path) -> None:
    log = tmp_path / "log"
    supervisor = Supervisor(os.environ)
    pid = supervisor.start(_child("worker", log, delay=30.0, grace=60.0))
    _wait_for(_ready(log, "worker"))
    threading.Timer(0.3, supervisor.hurry).start()

    (stopped,) = supervisor.stop_all()

    assert stopped.killed
    assert not _alive(pid)
    assert "stopped" not in log.read_text()
