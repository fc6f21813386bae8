"""``tidelake evaluate``'s scoring: flags against the ledger's labels."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa
from deltalake import write_deltalake

from tidelake.lake import Lake
from tidelake.ledger import LEDGER_PATH
from tidelake.quality.evaluate import evaluate, prf, score_fraud
from tidelake.settings import LakeSettings


def test_prf_counts_and_the_empty_cases() -> None:
    assert prf(9, 1, 0) == {
        "precision": 0.9,
        "recall": 1.0,
        "f1": 0.9474,
        "tp": 9,
        "fp": 1,
        "fn": 0,
    }
    assert prf(0, 0, 3)["precision"] == 0.0 and prf(0, 0, 3)["recall"] == 0.0


def test_fraud_scores_per_rule_and_the_normal_flagged_rate() -> None:
    purchases = pl.DataFrame(
        {
            "event_id": ["v1", "v2", "v3", "n1", "n2", "n3", "n4", "r1"],
            "label": ["fraud:velocity"] * 3 + [None] * 4 + ["fraud:rapid_checkout"],
        }
    )
    flags = pl.DataFrame(
        {
            "event_id": ["v1", "v2", "n1", "r1", "r1", "x9"],
            "rule": [
                "velocity",
                "velocity",
                "velocity",
                "rapid_checkout",
                "rapid_checkout",
                "velocity",
            ],
        }
    )

    rules, normal, flagged = score_fraud(purchases, flags)

    assert rules["velocity"] == prf(2, 1, 1), "x9 is not in the ledger: not scored"
    assert rules["rapid_checkout"] == prf(1, 0, 0), "a duplicated flag counts once"
    assert "ip_sharing" not in rules, "rules with neither labels nor flags are left out"
    assert (normal, flagged) == (4, 1)


def test_a_ledger_without_labels_evaluates_to_nothing(tmp_path: Path) -> None:
    lake = Lake.from_settings(LakeSettings(uri=str(tmp_path / "lake")))
    write_deltalake(
        lake.uri(LEDGER_PATH),
        pa.table({"topic": ["shop.purchases"], "event_id": ["e1"], "kind": ["on_time"]}),
    )
    result = evaluate(lake)
    assert result.fraud == {} and result.labelled_purchases == 0


def test_metadata_is_flat_numeric_and_empty_without_labels() -> None:
    from tidelake.quality.evaluate import Evaluation, metadata

    assert metadata(Evaluation(), "fraud") == {}
    result = Evaluation(
        fraud={"velocity": prf(3, 0, 1)},
        normal_purchases=100,
        normal_flagged=1,
        labelled_purchases=4,
        anomalies={"robust_zscore": {"spike": prf(2, 0, 0)}},
        labelled_readings=2,
    )
    assert metadata(result, "fraud") == {
        "precision_velocity": 1.0,
        "recall_velocity": 0.75,
        "normal_flagged_rate": 0.01,
    }
    assert metadata(result, "anomalies") == {"f1_robust_zscore_spike": 1.0}
