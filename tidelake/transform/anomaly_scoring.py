"""How well the ``gold/sensor_anomalies`` methods find labelled anomalies.

:func:`score_against_labels` compares the detected anomalies with labelled readings (the
simulator's ``anomaly:<kind>`` labels) and reports precision, recall and F1 per method and kind;
the attribution rules for false positives are in its docstring.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from tidelake.transform.anomalies import METHODS, SERIES


def score_against_labels(
    anomalies: pl.DataFrame,
    labelled_readings: pl.DataFrame,
    *,
    methods: Sequence[str] = METHODS,
    attribution_window: int = 60,
) -> dict[tuple[str, str], dict[str, float]]:
    """Precision, recall and F1 of each method per anomaly kind, against labelled readings.

    Rules:

    * ``labelled_readings`` are all evaluated readings (normal ones included): ``event_id`` and
      ``label`` (``anomaly:<kind>``; null = normal). Anomalies of other readings are ignored.
    * A flagged reading labelled ``anomaly:k`` is a true positive of ``k``; a labelled reading
      not flagged is a false negative of its kind.
    * A flagged normal reading is a false positive. When ``labelled_readings`` also has
      ``device_id``, ``metric`` and ``event_time``, it is charged to the kind of the nearest
      labelled reading of the same series within ``attribution_window`` readings (the aftermath
      of a scenario); otherwise (far from every scenario, or no series columns) to every kind,
      since a false alarm on normal traffic hurts whatever one is looking for.
    * Kind ``all`` pools every kind (each false positive once). Kinds without labelled readings
      are left out. Precision with nothing flagged is 0.

    Returns:
        ``{(method, kind): {"precision", "recall", "f1", "tp", "fp", "fn"}}``.
    """
    labels = labelled_readings.with_columns(
        pl.col("label").str.strip_prefix("anomaly:").alias("_kind")
    )
    kinds = sorted(set(labels["_kind"].drop_nulls().to_list()))
    has_series = all(c in labels.columns for c in (*SERIES, "event_time"))
    near = _nearest_kind(labels, attribution_window) if has_series else None
    out: dict[tuple[str, str], dict[str, float]] = {}
    for method in methods:
        flagged = anomalies.filter(pl.col("method") == method).select("event_id").unique()
        rows = labels.select("event_id", "_kind").join(
            flagged.with_columns(pl.lit(True).alias("_flag")), on="event_id", how="left"
        )
        rows = rows.with_columns(pl.col("_flag").fill_null(False))
        fp = rows.filter(pl.col("_flag") & pl.col("_kind").is_null()).select("event_id")
        if near is not None:
            fp = fp.join(near, on="event_id", how="left")
        else:
            fp = fp.with_columns(pl.lit(None, dtype=pl.String).alias("_near"))
        unattributed = int(fp["_near"].null_count())
        for kind in [*kinds, "all"]:
            of_kind = rows["_kind"].is_not_null() if kind == "all" else rows["_kind"] == kind
            tp = int((of_kind & rows["_flag"]).sum())
            fn = int((of_kind & ~rows["_flag"]).sum())
            charged = fp.height if kind == "all" else int((fp["_near"] == kind).sum())
            false_pos = charged if kind == "all" else charged + unattributed
            out[(method, kind)] = _prf(tp, false_pos, fn)
    return out


def _nearest_kind(labels: pl.DataFrame, attribution_window: int) -> pl.DataFrame:
    """For each normal reading: the kind of the nearest labelled reading of its series within
    ``attribution_window`` readings (``_near``, null when none)."""
    ordered = labels.sort([*SERIES, "event_time", "event_id"]).with_columns(
        pl.int_range(pl.len()).over(SERIES).alias("_pos")
    )
    labelled = (
        ordered.filter(pl.col("_kind").is_not_null())
        .select(*SERIES, "_pos", pl.col("_kind").alias("_near"))
        .sort("_pos")
    )
    normal = ordered.filter(pl.col("_kind").is_null()).select("event_id", *SERIES, "_pos")
    return (
        normal.sort("_pos")
        .join_asof(
            labelled,
            on="_pos",
            by=list(SERIES),
            strategy="nearest",
            tolerance=attribution_window,
            check_sortedness=False,  # sorted by _pos; polars cannot verify it per `by` group
        )
        .select("event_id", "_near")
    )


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


__all__ = [
    "score_against_labels",
]
