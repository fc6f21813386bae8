"""Dagster resources: Kafka (real + fake), lake storage, ingestion caps, alert webhook.

Modules only define; ``pipeline_defs.definitions`` picks and configures them per environment.
"""

from resources.alerts import AlertWebhookResource
from resources.ingest import IngestResource, build_engine
from resources.kafka import FakeKafkaResource, KafkaClient, KafkaResource
from resources.lake import LakeResource

__all__ = [
    "AlertWebhookResource",
    "FakeKafkaResource",
    "IngestResource",
    "KafkaClient",
    "KafkaResource",
    "LakeResource",
    "build_engine",
]
