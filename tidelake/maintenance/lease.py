"""A maintenance lease kept in the table's own Delta log: one compactor per table at a time.

Why: delta-rs 1.6 does not detect two *compactions* of the same partition racing (measured:
both commit from one snapshot, both remove the same files with ``dataChange=false``, and the
partition's rows end up twice). Appends, overwrites and deletes racing a compaction are
detected or rebased correctly; a second compactor is not. So compactors exclude each other.

Rule: the lease is the txn version of :data:`LEASE_APP_ID`, an expiry in epoch milliseconds.
A maintainer claims it with an empty commit carrying that txn, from a snapshot in which the
lease has expired; two claims from one snapshot conflict on the app id (the second gets
``CommitFailedError``), so exactly one wins. The holder renews before half the lease is used and
releases it (a txn version of *now*, i.e. expired) when done. A crashed holder's lease simply
expires. The lease needs no storage beyond the log, so it works the same on S3.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import CommitFailedError

LEASE_APP_ID = "tidelake.maintenance"
"""The txn app id of the lease (distinct from ingest ids ``group/topic/partition`` and derived
watermarks ``tidelake:<output>:<input>``)."""
LEASE_SECONDS = 600.0
"""How long a claim lasts; a pass renews it before half has passed."""


class LeaseHeld(Exception):
    """Another maintainer holds the table's lease; this pass leaves the table alone."""


@dataclass
class Lease:
    """A held lease on one table (see the module docstring)."""

    open_table: Callable[[], DeltaTable]
    custom_metadata: Mapping[str, str]
    seconds: float = LEASE_SECONDS
    clock: Callable[[], float] = time.time
    expires_ms: int = 0

    def acquire(self) -> None:
        """Claim the lease, or raise :class:`LeaseHeld` if another maintainer has it."""
        table = self.open_table()
        self._check_free(table)
        self._commit(table, self._until())

    def renew_if_due(self) -> None:
        """Extend the lease when less than half of it is left (raises if it was lost)."""
        if self.expires_ms - self._now_ms() > self.seconds * 500:
            return
        table = self.open_table()
        if table.transaction_version(LEASE_APP_ID) != self.expires_ms:
            raise LeaseHeld("the maintenance lease was taken over by another maintainer")
        self._commit(table, self._until())

    def release(self) -> None:
        """Let the lease expire now (best effort: an unreleased lease expires by itself)."""
        table = self.open_table()
        if table.transaction_version(LEASE_APP_ID) == self.expires_ms:
            self._commit(table, self._now_ms())

    def _check_free(self, table: DeltaTable) -> None:
        held = table.transaction_version(LEASE_APP_ID)
        if held is not None and held > self._now_ms():
            left = (held - self._now_ms()) / 1000
            raise LeaseHeld(f"another maintainer holds the lease for {left:.0f} s more")

    def _commit(self, table: DeltaTable, until_ms: int) -> None:
        try:
            table.create_write_transaction(
                [],
                "append",
                table.schema(),
                list(table.metadata().partition_columns),
                commit_properties=CommitProperties(
                    custom_metadata=dict(self.custom_metadata),
                    app_transactions=[Transaction(LEASE_APP_ID, until_ms)],
                ),
            )
        except CommitFailedError as exc:
            raise LeaseHeld(f"another maintainer claimed the lease first ({exc})") from exc
        self.expires_ms = until_ms

    def _until(self) -> int:
        return self._now_ms() + int(self.seconds * 1000)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)
