"""Operator-accepted gaps: the one way a stored position may skip offsets, visibly.

When retention deleted records before they were ingested, a batch stops with
:class:`~tidelake.ingest.errors.OffsetRangeError` and never skips them by itself. An operator who
accepts the loss runs ``tidelake ingest --accept-gap TOPIC:PARTITION:OFFSET --reason "..."``:
:func:`accept_gap` then commits an empty append to bronze whose txn moves the partition's
position to OFFSET and whose annotation (kind ``accept_gap``) records the skipped range, the
reason, who and when. The offsets check counts those offsets as accepted, not missing, and
reports them; the next batch's report lists the gap.
"""

from __future__ import annotations

import getpass
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from deltalake import CommitProperties, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError

from tidelake.contracts import TopicContract
from tidelake.ingest.annotations import CommitAnnotation
from tidelake.ingest.engine import IngestEngine
from tidelake.ingest.errors import IngestError
from tidelake.ingest.positions import app_id, stored_positions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GapSpec:
    """``TOPIC:PARTITION:OFFSET`` as given on the command line."""

    topic: str
    partition: int
    offset: int

    @classmethod
    def parse(cls, text: str) -> GapSpec:
        parts = text.rsplit(":", 2)
        if len(parts) != 3 or not parts[0]:
            raise ValueError(f"{text!r} is not TOPIC:PARTITION:OFFSET")
        try:
            partition, offset = int(parts[1]), int(parts[2])
        except ValueError:
            raise ValueError(f"{text!r}: PARTITION and OFFSET must be integers") from None
        if partition < 0 or offset < 0:
            raise ValueError(f"{text!r}: PARTITION and OFFSET must be >= 0")
        return cls(parts[0], partition, offset)


@dataclass(frozen=True)
class AcceptedGap:
    """What :func:`accept_gap` recorded."""

    topic: str
    partition: int
    first: int
    last: int
    reason: str
    by: str
    at: str
    version: int

    @property
    def offsets(self) -> int:
        return self.last - self.first + 1

    def sentence(self) -> str:
        return (
            f"{self.topic}[{self.partition}]: accepted the loss of offsets {self.first}-"
            f"{self.last} ({self.offsets} records) in bronze commit {self.version}; "
            f"by {self.by} at {self.at}: {self.reason}"
        )


def accept_gap(
    engine: IngestEngine,
    contract: TopicContract,
    partition: int,
    offset: int,
    reason: str,
    by: str | None = None,
) -> AcceptedGap:
    """Move ``partition``'s stored position forward to ``offset``, recording why.

    Rules: the partition must have a stored position; ``offset`` must lie past it (positions
    never move back: a re-created topic repeats offsets bronze already holds) and at or below
    the broker's first retained offset (only records the broker no longer has can be accepted
    as lost; records it still has are ingested, never skipped); ``reason`` must say why.

    Raises:
        IngestError: any rule is broken; nothing is written.
    """
    if not reason.strip():
        raise IngestError("--reason is required: say why these records may be skipped")
    from confluent_kafka import TopicPartition

    topic = contract.physical_topic(engine.kafka.topic_prefix)
    group = engine.kafka.consumer_group
    bronze = engine.bronze_table(contract)
    position = stored_positions(bronze, group, topic, [partition])[partition]
    if position is None:
        raise IngestError(
            f"{topic}[{partition}] has never been ingested; there is no position to move"
        )
    consumer = engine.consumer_factory(engine.consumer_config())
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        consumer.close()
    if offset <= position:
        raise IngestError(
            f"{topic}[{partition}]: offset {offset} is not past the stored position {position}; "
            "positions never move back"
        )
    if offset > low:
        raise IngestError(
            f"{topic}[{partition}]: the broker still holds offsets {low} and up (log end "
            f"{high}); only offsets below {low} are gone, so accept at most up to {low}: "
            f"`--accept-gap {topic}:{partition}:{low}`"
        )
    who = by or _user()
    at = datetime.now(UTC).isoformat(timespec="seconds")
    annotation = CommitAnnotation(
        kind="accept_gap",
        topic=topic,
        topic_id=engine.topic_id(topic),
        group=group,
        ranges={partition: (position, offset)},
        accepted={partition: [(position, offset - 1)]},
        audit={"reason": reason, "by": who, "at": at, "low": int(low), "high": int(high)},
    )
    txn = Transaction(app_id(group, topic, partition), offset)
    for attempt in range(1, 11):
        bronze.update_incremental()
        if (bronze.transaction_version(txn.app_id) or 0) != position:
            raise IngestError(
                f"{topic}[{partition}]: the stored position moved while accepting the gap "
                f"(now {bronze.transaction_version(txn.app_id)}); check and run again"
            )
        try:
            write_deltalake(
                bronze,
                bronze.schema().to_arrow().empty_table(),
                mode="append",
                commit_properties=CommitProperties(
                    app_transactions=[txn], custom_metadata=annotation.custom_metadata()
                ),
            )
            break
        except CommitFailedError:
            time.sleep(0.05 * attempt)
    else:
        raise IngestError(f"{topic}[{partition}]: could not commit the accepted gap")
    bronze.update_incremental()
    gap = AcceptedGap(topic, partition, position, offset - 1, reason, who, at, bronze.version())
    log.warning("%s", gap.sentence())
    return gap


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
