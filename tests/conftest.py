"""Shared fixtures: an embedded Kafka broker and S3 API per session, isolation per test.

Isolation rules: every test gets its own topic prefix (so its own topics) and its own S3 bucket;
the servers themselves are shared by the session because starting them costs time, not safety.
Tests that need the real services are marked ``@pytest.mark.integration``.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidelake.broker import EmbeddedBroker
from tidelake.dagster_home import ensure_dagster_home
from tidelake.kafka_admin import ensure_topics
from tidelake.s3server import EmbeddedS3
from tidelake.settings import KafkaSettings, LakeSettings

# Variables that could leak ambient credentials or endpoints into a test.
_AMBIENT_ENV = re.compile(r"^(AWS_|KAFKA_|TIDELAKE_)|^(LAKE_URI|DAGSTER_HOME)$")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers (``127.0.0.1:<port>``) of a Tansu broker shared by the session."""
    with EmbeddedBroker(log_dir=tmp_path_factory.mktemp("tansu"), stop_grace=2.0) as broker:
        yield broker.bootstrap_servers


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix unique to this test, e.g. ``t1a2b3c4d.``."""
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
def kafka_settings(kafka_broker: str, topic_prefix: str) -> KafkaSettings:
    """Settings for the session broker with this test's prefix; all contract topics exist (3 p.)."""
    settings = KafkaSettings(
        bootstrap_servers=kafka_broker,
        topic_prefix=topic_prefix,
        consumer_group=f"{topic_prefix}ingest",
        partitions=3,
    )
    ensure_topics(settings)
    return settings


@pytest.fixture(scope="session")
def s3_server() -> Iterator[EmbeddedS3]:
    """An S3 API server (moto, in a child process) on loopback, shared by the session."""
    with EmbeddedS3() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: EmbeddedS3) -> str:
    """A fresh, empty bucket unique to this test."""
    name = f"tl-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(name)
    return name


@pytest.fixture
def s3_lake_settings(s3_server: EmbeddedS3, s3_bucket: str) -> LakeSettings:
    """Lake settings for ``s3://<unique bucket>/lake`` on the embedded S3 server."""
    return s3_server.lake_settings(s3_bucket, "lake")


@pytest.fixture
def local_lake_settings(tmp_path: Path) -> LakeSettings:
    """Lake settings for a lake in this test's temporary directory."""
    return LakeSettings(uri=str(tmp_path / "lake"))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Strip AWS_*, KAFKA_*, TIDELAKE_*, LAKE_URI, DAGSTER_HOME and point HOME at an empty dir.

    Opt-in. Afterwards credentials and endpoints reach the code only through explicit config.
    Yields the temporary HOME.
    """
    for name in list(os.environ):
        if _AMBIENT_ENV.match(name):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary DAGSTER_HOME with Tidelake's dagster.yaml, exported for this test."""
    home = ensure_dagster_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home
