"""The event contract: topics, their payload fields, and the bronze/quarantine table schemas.

This module is the one registry of topic → schema → bronze table. The simulator produces against
it, the ingest engine validates against it, Dagster builds one bronze asset per entry, and the
reconciliation report groups by it. Nothing here imports Dagster.

Every message is one UTF-8 JSON object with the envelope fields ``event_id`` (UUID string),
``event_type``, ``event_time`` (RFC 3339 with a zone) and optional ``received_time``, plus the
payload fields of its topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import pyarrow as pa

FieldKind = Literal["string", "int", "float", "timestamp"]

ARROW_TYPES: dict[FieldKind, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


@dataclass(frozen=True)
class Field:
    """One JSON field of the contract.

    Args:
        name: JSON key.
        kind: logical type. ``int`` accepts JSON integers only; ``float`` accepts any JSON number;
            ``timestamp`` is an RFC 3339 string with a zone (``Z`` or ``±hh:mm``).
        nullable: whether the key may be absent or ``null``.
        doc: what the field means (becomes column metadata in the catalog).
    """

    name: str
    kind: FieldKind
    nullable: bool = False
    doc: str = ""

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.kind]


ENVELOPE: tuple[Field, ...] = (
    Field("event_id", "string", doc="UUID, unique per logical event (producer retries repeat it)"),
    Field("event_type", "string", doc="what happened; must be one of the topic's event types"),
    Field("event_time", "timestamp", doc="when it happened (UTC); decides the hour partition"),
    Field("received_time", "timestamp", nullable=True, doc="when the producer or API accepted it"),
)


@dataclass(frozen=True)
class TopicContract:
    """One Kafka topic of the contract and the bronze table it lands in.

    Args:
        name: logical topic name, e.g. ``shop.purchases`` (an environment prefix may be added).
        key_field: payload field used as the Kafka message key (keeps an entity's events ordered).
        event_types: the ``event_type`` values allowed on this topic.
        fields: payload fields after the envelope.
        description: what the bronze table holds (becomes the asset description).
        retention_days: suggested topic retention.
        non_negative: numeric payload fields that must be >= 0 (``quantity`` must be > 0).
    """

    name: str
    key_field: str
    event_types: frozenset[str]
    fields: tuple[Field, ...]
    description: str
    retention_days: int = 7
    non_negative: tuple[str, ...] = ()
    positive: tuple[str, ...] = ()

    @property
    def table_name(self) -> str:
        """``shop.purchases`` → ``shop_purchases``: the Delta table and asset name."""
        return self.name.replace(".", "_")

    @property
    def bronze_path(self) -> str:
        """Path of the bronze table relative to ``LAKE_URI``."""
        return f"bronze/{self.table_name}"

    @property
    def silver_path(self) -> str:
        """Path of the silver table (each logical event once) relative to ``LAKE_URI``."""
        return f"silver/{self.table_name}"

    @property
    def all_fields(self) -> tuple[Field, ...]:
        return ENVELOPE + self.fields

    def physical_topic(self, prefix: str = "") -> str:
        """The Kafka topic name with an optional environment prefix (``dev.`` + ``shop.clicks``)."""
        return f"{prefix}{self.name}"

    def bronze_schema(self) -> pa.Schema:
        """Arrow schema of ``bronze/<table>``: contract fields, Kafka coordinates, partitions."""
        cols = [pa.field(f.name, f.arrow_type, nullable=f.nullable) for f in self.all_fields]
        return pa.schema(cols + list(BRONZE_META_FIELDS))

    def silver_schema(self) -> pa.Schema:
        """Arrow schema of ``silver/<table>``: the bronze columns plus ``_deliveries``."""
        return self.bronze_schema().append(SILVER_DELIVERIES_FIELD)


BRONZE_META_FIELDS: tuple[pa.Field, ...] = (
    pa.field("_topic", pa.string(), nullable=False),
    pa.field("_partition", pa.int32(), nullable=False),
    pa.field("_offset", pa.int64(), nullable=False),
    pa.field("_kafka_timestamp", pa.timestamp("us", tz="UTC"), nullable=True),
    pa.field("_key", pa.string(), nullable=True),
    # Nullable only because Delta adds a column to an existing table as nullable (its older rows
    # read back NULL); the decoder always writes True or False.
    pa.field("_key_base64", pa.bool_(), nullable=True),
    pa.field("_ingested_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("event_date", pa.date32(), nullable=False),
    pa.field("event_hour", pa.int32(), nullable=False),
)
"""Columns every bronze table adds to its contract fields.

``_key`` is the Kafka message key: its UTF-8 text, or its standard base64 when the key is not
valid UTF-8 (then ``_key_base64`` is True). No key is NULL, an empty key is ``""``; both have
``_key_base64`` False. ``_key_base64`` is NULL only in rows written before the column existed."""

SILVER_DELIVERIES_FIELD = pa.field("_deliveries", pa.int32(), nullable=False)
"""How many bronze deliveries (producer retries included) the silver row's ``event_id`` had."""

BRONZE_PARTITION_BY: tuple[str, ...] = ("event_date", "event_hour")
"""Bronze is Delta-partitioned by the UTC date and hour of ``event_time``."""

QUARANTINE_PATH = "quarantine"
QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("_topic", pa.string(), nullable=False),
        pa.field("_partition", pa.int32(), nullable=False),
        pa.field("_offset", pa.int64(), nullable=False),
        pa.field("_kafka_timestamp", pa.timestamp("us", tz="UTC"), nullable=True),
        pa.field("_ingested_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("key", pa.binary(), nullable=True),
        pa.field("raw", pa.binary(), nullable=True),
        pa.field("error", pa.string(), nullable=False),
        pa.field("error_detail", pa.string(), nullable=False),
        pa.field("ingest_date", pa.date32(), nullable=False),
    ]
)
"""The ``quarantine`` table: every record that failed parsing or validation, with the original
bytes (``raw``), the reason code (``error``, one of :class:`QuarantineReason`) and a readable
explanation (``error_detail``). Partitioned by ``_topic`` and ``ingest_date``."""
QUARANTINE_PARTITION_BY: tuple[str, ...] = ("_topic", "ingest_date")


class QuarantineReason(StrEnum):
    """Why a record went to quarantine. The first failing rule in this order wins."""

    OVERSIZED = "oversized"
    """The message is larger than the configured maximum (``TIDELAKE_MAX_MESSAGE_BYTES``)."""
    INVALID_UTF8 = "invalid_utf8"
    """The bytes are not UTF-8 text (or the message is empty/tombstone)."""
    MALFORMED_JSON = "malformed_json"
    """The text does not parse as JSON, or its top-level object repeats a key (readers disagree
    on which value wins)."""
    NOT_AN_OBJECT = "not_an_object"
    """The JSON is valid but not an object."""
    MISSING_FIELD = "missing_field"
    """A required field is absent or null."""
    WRONG_TYPE = "wrong_type"
    """A field has the wrong JSON type (e.g. a string where an integer belongs, or ``2.5``)."""
    INVALID_EVENT_ID = "invalid_event_id"
    """``event_id`` is not a UUID."""
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    """``event_type`` is not one the topic allows."""
    INVALID_TIMESTAMP = "invalid_timestamp"
    """A timestamp is not RFC 3339 with a zone (date, time with seconds, ``Z`` or ``±hh:mm``)."""
    ABSURD_TIMESTAMP = "absurd_timestamp"
    """``event_time`` is before 2000-01-01 or too far in the future of ingestion."""
    OUT_OF_RANGE = "out_of_range"
    """A number bronze cannot hold or its domain forbids: an integer beyond the 64-bit range, a
    non-finite float (inf, -inf, NaN), or a broken domain rule (``quantity`` <= 0,
    ``unit_price`` < 0)."""
    UNREPRESENTABLE = "unrepresentable"
    """A value the bronze schema cannot hold; a catch-all that should never fire for a rule the
    validator knows. It is checked last, on the rows every other rule accepted."""


_s: FieldKind = "string"

TOPICS: dict[str, TopicContract] = {
    c.name: c
    for c in (
        TopicContract(
            name="shop.page_views",
            key_field="user_id",
            event_types=frozenset({"page_view"}),
            fields=(
                Field("user_id", _s, doc="shopper id"),
                Field("session_id", _s, doc="web session id"),
                Field("product_id", _s, nullable=True, doc="product shown, if a product page"),
                Field("page", _s, doc="page path"),
                Field("referrer", _s, nullable=True, doc="referring URL or channel"),
                Field("device", _s, doc="desktop, mobile or tablet"),
            ),
            description="Web-shop page views, one row per Kafka record, as landed.",
        ),
        TopicContract(
            name="shop.clicks",
            key_field="user_id",
            event_types=frozenset({"click", "add_to_cart"}),
            fields=(
                Field("user_id", _s, doc="shopper id"),
                Field("session_id", _s, doc="web session id"),
                Field("product_id", _s, doc="product clicked or added to the cart"),
                Field("element", _s, doc="UI element clicked"),
            ),
            description="Web-shop clicks and add-to-cart events, one row per Kafka record.",
        ),
        TopicContract(
            name="shop.searches",
            key_field="user_id",
            event_types=frozenset({"search"}),
            fields=(
                Field("user_id", _s, doc="shopper id"),
                Field("session_id", _s, doc="web session id"),
                Field("query", _s, doc="search text"),
                Field("results_count", "int", doc="number of results shown"),
            ),
            description="Web-shop searches, one row per Kafka record, as landed.",
            non_negative=("results_count",),
        ),
        TopicContract(
            name="shop.purchases",
            key_field="user_id",
            event_types=frozenset({"purchase"}),
            fields=(
                Field("user_id", _s, doc="shopper id"),
                Field("session_id", _s, doc="web session id"),
                Field("order_id", _s, doc="order id (one order may span several lines)"),
                Field("product_id", _s, doc="product bought"),
                Field("quantity", "int", doc="units bought, > 0"),
                Field("unit_price", "float", doc="price per unit in `currency`, >= 0"),
                Field("currency", _s, doc="ISO 4217 code"),
                Field("payment_method", _s, doc="card, paypal, invoice, ..."),
                Field("ip_address", _s, doc="client IP (fraud signals)"),
            ),
            description="Web-shop purchase lines, one row per Kafka record; kept longest.",
            retention_days=30,
            non_negative=("unit_price",),
            positive=("quantity",),
        ),
        TopicContract(
            name="app.interactions",
            key_field="user_id",
            event_types=frozenset({"app_open", "screen_view", "tap", "app_close"}),
            fields=(
                Field("user_id", _s, doc="app user id"),
                Field("device_id", _s, doc="phone or tablet id"),
                Field("platform", _s, doc="ios or android"),
                Field("app_version", _s, doc="semantic version of the app"),
                Field("screen", _s, doc="screen name"),
            ),
            description="Mobile-app interactions (opens, screens, taps, closes), as landed.",
        ),
        TopicContract(
            name="infra.sensor_readings",
            key_field="device_id",
            event_types=frozenset({"sensor_reading"}),
            fields=(
                Field("device_id", _s, doc="sensor device id"),
                Field("site", _s, doc="site / data centre"),
                Field("metric", _s, doc="temperature, humidity, power, ..."),
                Field("value", "float", doc="reading"),
                Field("unit", _s, doc="unit of `value`"),
            ),
            description="Infrastructure sensor readings, one row per Kafka record, as landed.",
        ),
    )
}
"""The registry: logical topic name → contract."""


def topic_for_physical(physical: str, prefix: str = "") -> TopicContract:
    """Return the contract of a physical (possibly prefixed) Kafka topic name.

    Raises:
        KeyError: the topic is not part of the contract.
    """
    if prefix and physical.startswith(prefix):
        physical = physical[len(prefix) :]
    return TOPICS[physical]
