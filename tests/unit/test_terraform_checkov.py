"""checkov over ``terraform/`` and the ``Dockerfile``: no failed check, skips inline with reasons.

checkov pins dependencies that clash with dagster's, so it lives in a virtualenv of its own,
``.venv-tools`` (the one ``make check-terraform`` uses too). The first run creates it and installs
``terraform/checkov-requirements.txt`` (about 20 s here, longer on a cold pip cache); later runs
reuse it while that file is unchanged, and the scans take about 10 s.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
TOOLS = ROOT / ".venv-tools"
STAMP = TOOLS / ".checkov-installed"
REQUIREMENTS = TERRAFORM / "checkov-requirements.txt"
SKIP = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")


def checkov_executable() -> Path:
    """``.venv-tools/bin/checkov``, installing it first if the stamp is missing or outdated."""
    exe = TOOLS / "bin" / "checkov"
    fresh = STAMP.exists() and STAMP.stat().st_mtime >= REQUIREMENTS.stat().st_mtime
    if not (fresh and exe.exists()):
        subprocess.run([sys.executable, "-m", "venv", str(TOOLS)], check=True)
        subprocess.run(
            [
                str(TOOLS / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "-r",
                str(REQUIREMENTS),
            ],
            check=True,
            timeout=900,
        )
        STAMP.touch()
    return exe


def run_checkov(*args: str) -> dict[str, Any]:
    result = subprocess.run(
        [str(checkov_executable()), *args, "--output", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode in (0, 1), result.stderr[-3000:]
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


def _failures(report: dict[str, Any]) -> list[str]:
    return [
        f"{f['check_id']} {f['resource']} ({f['file_path']}): {f['check_name']}"
        for f in report.get("results", {}).get("failed_checks", [])
    ]


@pytest.mark.slow
def test_checkov_finds_no_failed_check_in_terraform() -> None:
    report = run_checkov("--config-file", str(TERRAFORM / ".checkov.yaml"))
    summary = report["summary"]
    assert summary["failed"] == 0, "\n".join(_failures(report))
    assert summary["parsing_errors"] == 0
    # Guards against a scan that silently saw nothing (a moved folder, a broken config).
    assert summary["resource_count"] > 100 and summary["passed"] > 300, summary


@pytest.mark.slow
def test_checkov_finds_no_failed_check_in_the_dockerfile() -> None:
    report = run_checkov(
        "--file",
        "Dockerfile",
        "--framework",
        "dockerfile",
        "--compact",
        "--quiet",
        "--skip-download",
    )
    assert report["summary"]["failed"] == 0, "\n".join(_failures(report))
    assert report["summary"]["passed"] > 0


def test_every_checkov_skip_is_inline_with_a_reason() -> None:
    config = (TERRAFORM / ".checkov.yaml").read_text()
    assert "skip-check" not in config, "skips belong next to their resource, with a reason"
    skips = 0
    for path in [*TERRAFORM.rglob("*.tf"), ROOT / "Dockerfile"]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if match := SKIP.search(line):
                skips += 1
                reason = (match.group(2) or "").strip()
                assert len(reason) >= 20, f"{path.relative_to(ROOT)}:{number} skip without a reason"
    assert skips > 0
