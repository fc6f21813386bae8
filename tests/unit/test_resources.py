"""Resources: settings validated like the environment, fake vs real Kafka, the alert webhook."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from resources import (
    AlertWebhookResource,
    FakeKafkaResource,
    IngestResource,
    KafkaResource,
    LakeResource,
    build_engine,
)
from tidelake.fake_kafka import FakeConsumer, FakeKafka
from tidelake.settings import ConfigError


def test_kafka_resource_builds_engine_settings() -> None:
    kafka = KafkaResource(
        bootstrap_servers="b1:9092,b2:9092",
        security_protocol="sasl_ssl",
        sasl_mechanism="scram-sha-512",
        sasl_username="u",
        sasl_password="p",
        extra_config="client.id=tidelake, socket.timeout.ms=5000",
        topic_prefix="dev.",
        partitions=6,
    )

    s = kafka.settings()

    assert s.security_protocol == "SASL_SSL"
    assert s.sasl_mechanism == "SCRAM-SHA-512"
    assert s.topic_prefix == "dev."
    assert s.partitions == 6
    assert s.client_config()["sasl.password"] == "p"
    assert s.client_config()["client.id"] == "tidelake"


def test_kafka_resource_rejects_what_the_settings_module_rejects() -> None:
    with pytest.raises(ConfigError, match="KAFKA_SASL_MECHANISM"):
        KafkaResource(bootstrap_servers="b:1", security_protocol="SASL_SSL").settings()


def test_the_real_consumer_factory_needs_bootstrap_servers() -> None:
    with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
        KafkaResource().consumer_factory()


def test_fake_kafka_resource_shares_its_in_memory_topics() -> None:
    fake = FakeKafka()
    fake.create_topic("p.shop.clicks", 1)
    res = FakeKafkaResource(fake, topic_prefix="p.")

    consumer = res.consumer_factory()({"group.id": "g"})

    assert isinstance(consumer, FakeConsumer)
    assert consumer.kafka is fake
    assert res.settings().topic_prefix == "p."


def test_lake_resource_local_and_s3(tmp_path: Path) -> None:
    local = LakeResource(uri=str(tmp_path / "lake")).lake()
    s3 = LakeResource(
        uri="s3://bucket/lake/",
        aws_region="eu-west-1",
        aws_endpoint_url="http://127.0.0.1:9000",
        aws_access_key_id="k",
        aws_secret_access_key="s",
        aws_allow_http=True,
    ).lake()

    assert local.root == str(tmp_path / "lake")
    assert local.storage_options == {}
    assert s3.root == "s3://bucket/lake"
    assert s3.storage_options["AWS_ALLOW_HTTP"] == "true"
    assert s3.storage_options["conditional_put"] == "etag"
    assert "AWS_S3_ALLOW_UNSAFE_RENAME" not in s3.storage_options


def test_lake_resource_rejects_other_schemes() -> None:
    with pytest.raises(ConfigError, match="LAKE_URI"):
        LakeResource(uri="gs://bucket/lake").settings()


def test_ingest_resource_validates_caps() -> None:
    assert IngestResource(quiet_seconds=0.2).settings().quiet_seconds == 0.2
    with pytest.raises(ConfigError, match="TIDELAKE_MAX_BATCH_RECORDS"):
        IngestResource(max_batch_records=0).settings()


def test_build_engine_wires_all_three(tmp_path: Path) -> None:
    fake = FakeKafka()
    engine = build_engine(
        FakeKafkaResource(fake, consumer_group="g"),
        LakeResource(uri=str(tmp_path)),
        IngestResource(commit_rows=10),
    )

    assert engine.kafka.consumer_group == "g"
    assert engine.settings.commit_rows == 10
    assert engine.lake.root == str(tmp_path)


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[Any]]]:
    received: list[Any] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def test_alert_webhook_posts_json(webhook: tuple[str, list[Any]]) -> None:
    url, received = webhook

    assert AlertWebhookResource(url=url).send({"text": "run failed"})
    assert received == [{"text": "run failed"}]


def test_alert_webhook_without_url_or_reachable_server_does_not_raise() -> None:
    assert not AlertWebhookResource().send({"text": "x"})
    assert not AlertWebhookResource(url="http://127.0.0.1:9/nothing", timeout_seconds=1).send({})
