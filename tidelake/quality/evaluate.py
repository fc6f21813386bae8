"""How well the fraud rules and anomaly methods find the simulator's labelled scenarios.

The producer ledger (``_ledger/produced``) labels the events a scenario made: ``fraud:<rule>`` on
exactly the purchase events that rule must flag, ``anomaly:<kind>`` on anomalous sensor readings,
null on normal traffic (:mod:`tidelake.simulator`). This module compares them with
``gold/fraud_flags`` and ``gold/sensor_anomalies``:

* **Fraud, per rule** over the purchases the ledger covers: a flag of rule R on a purchase
  labelled ``fraud:R`` is a true positive; a flag of R on any other purchase a false positive; a
  ``fraud:R`` purchase without a flag of R a false negative. ``normal_flagged_rate`` = normal
  (unlabelled) purchases with any flag / normal purchases (goal ≤ 1 %).
* **Anomalies, per method and kind**:
  :func:`tidelake.transform.anomaly_scoring.score_against_labels` over the readings the ledger
  covers.

Only events the ledger knows are scored (HTTP traffic, or a lake fed by other producers, has no
labels), and only those whose hours the tables have refreshed (:func:`evaluate` takes the flags as
they are).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from tidelake.contracts import TOPICS
from tidelake.lake import Lake
from tidelake.layers.hours import hour_start
from tidelake.ledger import LEDGER_PATH
from tidelake.transform.anomaly_scoring import score_against_labels
from tidelake.transform.fraud import FRAUD_RULES

FRAUD_PREFIX = "fraud:"
ANOMALY_PREFIX = "anomaly:"


@dataclass
class Evaluation:
    """Precision/recall/F1 of every rule and method, and the figures they come from."""

    fraud: dict[str, dict[str, float]] = field(default_factory=dict)
    """Rule → ``precision``, ``recall``, ``f1``, ``tp``, ``fp``, ``fn``."""
    normal_purchases: int = 0
    normal_flagged: int = 0
    anomalies: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    """Method → kind → ``precision``, ``recall``, ``f1``, ``tp``, ``fp``, ``fn``."""
    labelled_purchases: int = 0
    labelled_readings: int = 0

    @property
    def normal_flagged_rate(self) -> float:
        return self.normal_flagged / self.normal_purchases if self.normal_purchases else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "fraud": self.fraud,
            "normal_purchases": self.normal_purchases,
            "normal_flagged": self.normal_flagged,
            "normal_flagged_rate": round(self.normal_flagged_rate, 5),
            "labelled_purchases": self.labelled_purchases,
            "anomalies": self.anomalies,
            "labelled_readings": self.labelled_readings,
        }


def metadata(result: Evaluation, kind: str) -> dict[str, float]:
    """Flat figures for a materialization's metadata (numeric and named the same in every run,
    so the UI plots them): ``kind`` "fraud" → ``precision_<rule>``, ``recall_<rule>``,
    ``normal_flagged_rate``; "anomalies" → ``f1_<method>_<kind>``. Empty without labels."""
    out: dict[str, float] = {}
    if kind == "fraud" and result.labelled_purchases:
        for rule, s in result.fraud.items():
            out[f"precision_{rule}"] = s["precision"]
            out[f"recall_{rule}"] = s["recall"]
        out["normal_flagged_rate"] = round(result.normal_flagged_rate, 5)
    if kind == "anomalies" and result.labelled_readings:
        for method, kinds in result.anomalies.items():
            for name, s in kinds.items():
                out[f"f1_{method}_{name}"] = round(s["f1"], 4)
    return out


def prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall, F1 and the counts (precision 0 with nothing flagged)."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def score_fraud(
    purchases: pl.DataFrame, flags: pl.DataFrame
) -> tuple[dict[str, dict[str, float]], int, int]:
    """Per rule scores, and (normal purchases, normal purchases flagged) (module docstring).

    ``purchases``: ``event_id``, ``label`` (the ledger's purchases); ``flags``: ``event_id``,
    ``rule`` (``gold/fraud_flags``).
    """
    known = purchases.select("event_id", "label").unique("event_id")
    flagged = flags.select("event_id", "rule").unique().join(known, on="event_id", how="inner")
    out: dict[str, dict[str, float]] = {}
    for rule in FRAUD_RULES:
        label = FRAUD_PREFIX + rule
        hits = flagged.filter(pl.col("rule") == rule)
        tp = hits.filter(pl.col("label") == label).height
        fp = hits.height - tp
        positives = known.filter(pl.col("label") == label).height
        if positives or hits.height:
            out[rule] = prf(tp, fp, positives - tp)
    normal = known.filter(pl.col("label").is_null())
    normal_flagged = normal.join(flagged.select("event_id").unique(), on="event_id").height
    return out, normal.height, normal_flagged


def _table(lake: Lake, path: str, columns: list[str]) -> pl.DataFrame:
    table = lake.open(path)
    if table is None:
        return pl.DataFrame(schema={c: pl.String for c in columns})
    frame = pl.from_arrow(table.to_pyarrow_table(columns=columns))
    assert isinstance(frame, pl.DataFrame)
    return frame


def evaluate(lake: Lake, hours: Sequence[str] | None = None) -> Evaluation:
    """Score ``gold/fraud_flags`` and ``gold/sensor_anomalies`` against the ledger's labels;
    ``hours`` (hour partition keys) limits it to the events of those hours (what one refresh
    wrote), None scores everything."""
    ledger = lake.open(LEDGER_PATH)
    if ledger is None or "label" not in ledger.schema().to_arrow().names:
        return Evaluation()
    rows = pl.from_arrow(
        ledger.to_pyarrow_table(columns=["topic", "event_id", "event_time", "kind", "label"])
    )
    assert isinstance(rows, pl.DataFrame)
    rows = rows.filter((pl.col("kind") != "malformed") & pl.col("event_id").is_not_null())
    if hours is not None:
        starts = [hour_start(h) for h in hours]
        rows = rows.filter(pl.col("event_time").dt.truncate("1h").is_in(starts))
    purchases = rows.filter(pl.col("topic") == TOPICS["shop.purchases"].name)
    readings_ids = rows.filter(pl.col("topic") == TOPICS["infra.sensor_readings"].name)
    result = Evaluation()
    flags = _table(lake, "gold/fraud_flags", ["event_id", "rule"])
    result.fraud, result.normal_purchases, result.normal_flagged = score_fraud(purchases, flags)
    result.labelled_purchases = purchases.filter(pl.col("label").is_not_null()).height
    found = _table(lake, "gold/sensor_anomalies", ["event_id", "method"])
    silver = lake.open(TOPICS["infra.sensor_readings"].silver_path)
    if silver is not None and readings_ids.height:
        series = pl.from_arrow(
            silver.to_pyarrow_table(columns=["event_id", "device_id", "metric", "event_time"])
        )
        assert isinstance(series, pl.DataFrame)
        labelled = series.join(
            readings_ids.select("event_id", "label").unique("event_id"), on="event_id"
        )
        result.labelled_readings = labelled.filter(pl.col("label").is_not_null()).height
        for (method, kind), scores in score_against_labels(found, labelled).items():
            result.anomalies.setdefault(method, {})[kind] = scores
    return result


__all__ = ["Evaluation", "evaluate", "metadata", "prf", "score_fraud"]
