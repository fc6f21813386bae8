"""The dev stack's lake hygiene: an ephemeral broker must never feed a lake with older offsets."""

from __future__ import annotations

from pathlib import Path

from tidelake.cli import build_parser
from tidelake.devstack import EMBEDDED_MARKER, archive_embedded_lake


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
