"""What one maintenance pass over one Delta table did (or, in a dry run, would do)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class PartitionSkip:
    """A closed partition left uncompacted this pass, and why (the next pass tries again)."""

    partition: str
    reason: str


@dataclass
class MaintenanceReport:
    """The outcome of :func:`tidelake.maintenance.maintain_table` for one table.

    ``files_before``/``files_after`` and ``bytes_before``/``bytes_after`` count only the
    partitions compacted (planned, in a dry run). ``interleaved_commits``: other writers' commits
    that landed between a compaction's snapshot and its own commit (the race the appenders run
    with maintenance; delta-rs rebases a compaction over blind appends). ``conflicts_retried``:
    compactions that failed to commit (``CommitFailedError``) and were re-read and retried.
    ``checkpoint_version``: the checkpoint this pass wrote (None: none was due).
    """

    path: str
    dry_run: bool = False
    version_before: int | None = None
    version_after: int | None = None
    partitions_compacted: list[str] = field(default_factory=list)
    partitions_skipped: list[PartitionSkip] = field(default_factory=list)
    partitions_pending: int = 0
    files_before: int = 0
    files_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    vacuumed_files: int = 0
    checkpoint_version: int | None = None
    conflicts_retried: int = 0
    interleaved_commits: int = 0
    lease: str | None = None
    error: str | None = None
    duration_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """False only when the pass failed outright; skipped partitions are not failures."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for logs and the command line."""
        if self.error is not None:
            return f"{self.path}: FAILED: {self.error}"
        verb = "would compact" if self.dry_run else "compacted"
        parts = [
            f"{self.path}: {verb} {len(self.partitions_compacted)} partitions "
            f"({self.files_before} → {self.files_after} files, "
            f"{self.bytes_before} → {self.bytes_after} bytes)",
            f"{'would vacuum' if self.dry_run else 'vacuumed'} {self.vacuumed_files} files",
        ]
        if self.checkpoint_version is not None:
            parts.append(f"checkpoint at v{self.checkpoint_version}")
        if self.conflicts_retried:
            parts.append(f"{self.conflicts_retried} conflicts retried")
        if self.interleaved_commits:
            parts.append(f"{self.interleaved_commits} concurrent commits interleaved")
        if self.partitions_skipped:
            parts.append(f"{len(self.partitions_skipped)} partitions skipped")
        if self.partitions_pending:
            parts.append(f"{self.partitions_pending} left for the next pass")
        if self.lease:
            parts.append(self.lease)
        return "; ".join(parts) + f" ({self.duration_seconds:.2f} s)"
