"""Gold fraud_flags: each rule fires on its pattern and not on its near-miss."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from tidelake.settings import ConfigError
from tidelake.transform.fraud import (
    FRAUD_FLAGS_SCHEMA,
    FRAUD_RULES,
    FraudThresholds,
    browse_context,
    context_window,
    fraud_flags,
)
from tidelake.transform.windows import to_arrow

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TS = pl.Datetime("us", "UTC")
MIN = timedelta(minutes=1)
SEC = timedelta(seconds=1)


def purchases(*rows: dict[str, Any]) -> pl.DataFrame:
    """Purchase events; each row overrides a harmless default (own order, one method, one IP)."""
    out = []
    for i, row in enumerate(rows):
        base: dict[str, Any] = {
            "event_id": f"e{i}",
            "event_type": "purchase",
            "user_id": "u1",
            "session_id": "s1",
            "order_id": f"o{i}",
            "product_id": "p1",
            "quantity": 1,
            "unit_price": 10.0,
            "currency": "EUR",
            "payment_method": "card",
            "ip_address": f"10.0.0.{i}",
        }
        out.append(base | row)
    return pl.DataFrame(out, schema_overrides={"event_time": TS, "quantity": pl.Int64})


def browsing(*rows: tuple[datetime, str, str | None, str]) -> pl.DataFrame:
    """Page views or clicks as (event_time, session_id, product_id, event_type)."""
    return pl.DataFrame(
        {
            "event_id": [f"b{i}" for i in range(len(rows))],
            "event_time": [r[0] for r in rows],
            "session_id": [r[1] for r in rows],
            "product_id": [r[2] for r in rows],
            "event_type": [r[3] for r in rows],
        },
        schema={
            "event_id": pl.String,
            "event_time": TS,
            "session_id": pl.String,
            "product_id": pl.String,
            "event_type": pl.String,
        },
    )


NO_BROWSING = browsing()


def run(
    p: pl.DataFrame,
    views: pl.DataFrame = NO_BROWSING,
    clicks: pl.DataFrame = NO_BROWSING,
    hours: list[str] | None = None,
    thresholds: FraudThresholds | None = None,
) -> pl.DataFrame:
    return fraud_flags(
        p,
        views,
        clicks,
        hours=hours,
        thresholds=thresholds or FraudThresholds(),
        detected_at=NOW,
    )


def flagged(out: pl.DataFrame, rule: str) -> list[str]:
    return out.filter(pl.col("rule") == rule)["event_id"].to_list()


def reasons(out: pl.DataFrame, rule: str) -> list[str]:
    return out.filter(pl.col("rule") == rule)["reason"].to_list()


# -- velocity ----------------------------------------------------------------------------------


def test_velocity_four_purchases_in_ten_minutes_are_not_flagged_the_fifth_is() -> None:
    four = purchases(*({"event_time": T0 + i * 2 * MIN} for i in range(4)))
    assert flagged(run(four), "velocity") == []
    five = purchases(*({"event_time": T0 + i * 2 * MIN} for i in range(5)))
    out = run(five)
    assert flagged(out, "velocity") == ["e4"]
    assert reasons(out, "velocity") == ["5 purchases in 8 min; threshold 5 in 10 min"]


def test_velocity_a_burst_of_seven_flags_the_fifth_sixth_and_seventh() -> None:
    burst = purchases(*({"event_time": T0 + i * 100 * SEC} for i in range(7)))
    out = run(burst)
    assert flagged(out, "velocity") == ["e4", "e5", "e6"]
    # e6 at 10:10:00: the window (10:00:00, 10:10:00] no longer holds e0.
    assert reasons(out, "velocity")[0] == "5 purchases in 6 min 40 s; threshold 5 in 10 min"
    assert reasons(out, "velocity")[2] == "6 purchases in 8 min 20 s; threshold 5 in 10 min"


def test_velocity_purchases_ten_minutes_and_one_second_apart_are_not_counted_together() -> None:
    late = [T0 + 10 * MIN + SEC + i * SEC for i in range(4)]
    apart = purchases({"event_time": T0}, *({"event_time": t} for t in late))
    assert flagged(run(apart), "velocity") == []
    # Exactly 10 min apart: the window's start is open, so still not together.
    exact = purchases(
        {"event_time": T0}, *({"event_time": T0 + 10 * MIN - i * SEC} for i in range(4))
    )
    assert flagged(run(exact), "velocity") == []


def test_velocity_counts_per_user_and_ties_in_time_all_count() -> None:
    others = purchases(*({"event_time": T0 + i * SEC, "user_id": f"u{i}"} for i in range(5)))
    assert flagged(run(others), "velocity") == []
    same_instant = purchases(*({"event_time": T0} for _ in range(5)))
    assert sorted(flagged(run(same_instant), "velocity")) == ["e0", "e1", "e2", "e3", "e4"]


# -- ip_sharing --------------------------------------------------------------------------------


def test_ip_sharing_four_users_per_ip_are_not_flagged_five_are() -> None:
    ip = {"ip_address": "203.0.113.7"}
    four = purchases(*({"event_time": T0 + i * MIN, "user_id": f"u{i}"} | ip for i in range(4)))
    assert flagged(run(four), "ip_sharing") == []
    six = purchases(*({"event_time": T0 + i * 7 * MIN, "user_id": f"u{i}"} | ip for i in range(6)))
    out = run(six)
    assert flagged(out, "ip_sharing") == ["e4", "e5"]
    assert reasons(out, "ip_sharing") == [
        "5 users bought from 203.0.113.7 within 28 min; threshold 5 in 60 min",
        "6 users bought from 203.0.113.7 within 35 min; threshold 5 in 60 min",
    ]


def test_ip_sharing_repeat_purchases_of_one_user_count_once_and_old_users_expire() -> None:
    ip = {"ip_address": "203.0.113.7"}
    repeats = purchases(
        *({"event_time": T0 + i * MIN, "user_id": f"u{i % 4}"} | ip for i in range(8))
    )
    assert flagged(run(repeats), "ip_sharing") == []
    # u0 bought 60 min + 1 s before u4: only 4 distinct users remain in u4's window.
    times = [T0, T0 + 50 * MIN, T0 + 51 * MIN, T0 + 52 * MIN, T0 + 60 * MIN + SEC]
    expired = purchases(*({"event_time": t, "user_id": f"u{i}"} | ip for i, t in enumerate(times)))
    assert flagged(run(expired), "ip_sharing") == []
    # ...but a fresh purchase of u0 inside the window brings it back.
    back = purchases(
        *({"event_time": t, "user_id": f"u{i}"} | ip for i, t in enumerate(times)),
        {"event_time": T0 + 30 * MIN, "user_id": "u0"} | ip,
    )
    assert flagged(run(back), "ip_sharing") == ["e4"]


# -- payment_hopping ---------------------------------------------------------------------------


def test_payment_hopping_two_methods_are_not_flagged_three_are() -> None:
    two = purchases(
        {"event_time": T0, "payment_method": "card"},
        {"event_time": T0 + 5 * MIN, "payment_method": "paypal"},
        {"event_time": T0 + 9 * MIN, "payment_method": "card"},
    )
    assert flagged(run(two), "payment_hopping") == []
    three = purchases(
        {"event_time": T0, "payment_method": "card"},
        {"event_time": T0 + 5 * MIN, "payment_method": "paypal"},
        {"event_time": T0 + 18 * MIN, "payment_method": "gift_card"},
        {"event_time": T0 + 20 * MIN, "payment_method": "card"},
    )
    out = run(three)
    assert flagged(out, "payment_hopping") == ["e2", "e3"]
    assert reasons(out, "payment_hopping")[0] == (
        "3 payment methods (card, paypal, gift_card) in 18 min; threshold 3 in 60 min"
    )


def test_payment_hopping_methods_older_than_the_window_do_not_count() -> None:
    spread = purchases(
        {"event_time": T0, "payment_method": "card"},
        {"event_time": T0 + 30 * MIN, "payment_method": "paypal"},
        {"event_time": T0 + 60 * MIN, "payment_method": "gift_card"},
    )
    assert flagged(run(spread), "payment_hopping") == []
    other_users = purchases(
        {"event_time": T0, "payment_method": "card", "user_id": "a"},
        {"event_time": T0 + MIN, "payment_method": "paypal", "user_id": "b"},
        {"event_time": T0 + 2 * MIN, "payment_method": "gift_card"},
    )
    assert flagged(run(other_users), "payment_hopping") == []


# -- high_value --------------------------------------------------------------------------------


def baseline(orders: int, total: float = 100.0) -> list[dict[str, Any]]:
    """``orders`` one-line orders of ``total`` spread over the 20 h before T0."""
    return [
        {
            "event_time": T0 - timedelta(hours=20) + i * MIN,
            "user_id": f"b{i}",
            "unit_price": total,
            "order_id": f"base{i}",
        }
        for i in range(orders)
    ]


def test_high_value_ten_times_the_trailing_median_is_flagged_nine_point_nine_is_not() -> None:
    near = purchases(*baseline(20), {"event_time": T0, "unit_price": 990.0, "order_id": "big"})
    assert flagged(run(near), "high_value") == []
    big = purchases(*baseline(20), {"event_time": T0, "unit_price": 1000.0, "order_id": "big"})
    out = run(big)
    assert flagged(out, "high_value") == ["e20"]
    assert reasons(out, "high_value") == [
        "order total 1,000.00 EUR is 10.0x the trailing median 100.00 (20 orders in 24 h); "
        "threshold 10x"
    ]
    assert out.filter(pl.col("rule") == "high_value")["score"].to_list() == [0.5]


def test_high_value_with_fewer_than_twenty_trailing_orders_is_not_evaluated() -> None:
    few = purchases(*baseline(19), {"event_time": T0, "unit_price": 50_000.0, "order_id": "big"})
    assert flagged(run(few), "high_value") == []
    # Orders that started more than 24 h before do not belong to the baseline.
    old = [r | {"event_time": T0 - timedelta(hours=24, seconds=1)} for r in baseline(1)]
    stale = purchases(*baseline(19), *old, {"event_time": T0, "unit_price": 50_000.0})
    assert flagged(run(stale), "high_value") == []


def test_high_value_sums_the_order_lines_and_flags_every_line_of_the_order() -> None:
    lines = purchases(
        *baseline(20),
        {"event_time": T0, "order_id": "big", "quantity": 3, "unit_price": 200.0},
        {"event_time": T0 + SEC, "order_id": "big", "quantity": 2, "unit_price": 2005.0},
    )
    out = run(lines)
    assert flagged(out, "high_value") == ["e20", "e21"]
    assert reasons(out, "high_value")[1].startswith("order total 4,610.00 EUR is 46.1x")


# -- purchase_without_browsing -----------------------------------------------------------------


def test_a_purchase_without_any_browsing_is_flagged_with_score_one() -> None:
    out = run(purchases({"event_time": T0}))
    row = out.filter(pl.col("rule") == "purchase_without_browsing").row(0, named=True)
    assert row["event_id"] == "e0"
    assert row["score"] == 1.0
    assert row["reason"] == (
        "no view or add_to_cart of product p1 in session s1 in the 30 min before"
    )


def test_a_view_or_add_to_cart_of_the_product_in_the_session_clears_the_flag() -> None:
    p = purchases({"event_time": T0})
    views = browsing((T0 - 30 * MIN, "s1", "p1", "page_view"))
    assert flagged(run(p, views=views), "purchase_without_browsing") == []
    carts = browsing((T0 - 10 * MIN, "s1", "p1", "add_to_cart"))
    assert flagged(run(p, clicks=carts), "purchase_without_browsing") == []
    same_instant = browsing((T0, "s1", "p1", "page_view"))
    assert flagged(run(p, views=same_instant), "purchase_without_browsing") == []


def test_browsing_of_another_product_session_type_or_time_does_not_count() -> None:
    p = purchases({"event_time": T0})
    near_misses = {
        "another product": (browsing((T0 - MIN, "s1", "p2", "page_view")), NO_BROWSING),
        "another session": (browsing((T0 - MIN, "s2", "p1", "page_view")), NO_BROWSING),
        "a product-less page": (browsing((T0 - MIN, "s1", None, "page_view")), NO_BROWSING),
        "a plain click": (NO_BROWSING, browsing((T0 - MIN, "s1", "p1", "click"))),
        "too early": (browsing((T0 - 30 * MIN - SEC, "s1", "p1", "page_view")), NO_BROWSING),
        "after the purchase": (browsing((T0 + SEC, "s1", "p1", "page_view")), NO_BROWSING),
    }
    for what, (views, clicks) in near_misses.items():
        out = run(p, views=views, clicks=clicks)
        assert flagged(out, "purchase_without_browsing") == ["e0"], what
    out = run(p, views=browsing((T0 - 42 * MIN, "s1", "p1", "page_view")))
    assert reasons(out, "purchase_without_browsing") == [
        "no view or add_to_cart of product p1 in session s1 in the 30 min before "
        "(the last one 42 min before)"
    ]
    score = out.filter(pl.col("rule") == "purchase_without_browsing")["score"].item()
    assert score == pytest.approx(1 - 30 / 84)


def test_a_late_page_view_added_to_the_input_clears_the_purchase_without_browsing_flag() -> None:
    p = purchases({"event_time": T0})
    early = browsing((T0 - 2 * MIN, "s1", "p9", "page_view"))
    assert flagged(run(p, views=early), "purchase_without_browsing") == ["e0"]
    late = pl.concat([early, browsing((T0 - 5 * MIN, "s1", "p1", "page_view"))])
    assert flagged(run(p, views=late), "purchase_without_browsing") == []


# -- rapid_checkout ----------------------------------------------------------------------------


def test_rapid_checkout_three_seconds_is_not_rapid_two_point_nine_is() -> None:
    p = purchases({"event_time": T0})
    slow = browsing((T0 - 3 * SEC, "s1", "p1", "add_to_cart"))
    assert flagged(run(p, clicks=slow), "rapid_checkout") == []
    fast = browsing((T0 - timedelta(seconds=2.9), "s1", "p1", "add_to_cart"))
    out = run(p, clicks=fast)
    assert flagged(out, "rapid_checkout") == ["e0"]
    assert reasons(out, "rapid_checkout") == ["add_to_cart 2.9 s before purchase; threshold 3 s"]
    score = out.filter(pl.col("rule") == "rapid_checkout")["score"].item()
    assert score == pytest.approx(1 - 2.9 / 6)


def test_rapid_checkout_needs_an_add_to_cart_of_the_product_in_the_session_not_after() -> None:
    p = purchases({"event_time": T0})
    for clicks in (
        browsing((T0 - SEC, "s1", "p1", "click")),
        browsing((T0 - SEC, "s2", "p1", "add_to_cart")),
        browsing((T0 - SEC, "s1", "p2", "add_to_cart")),
        browsing((T0 + SEC, "s1", "p1", "add_to_cart")),
    ):
        assert flagged(run(p, clicks=clicks), "rapid_checkout") == []
    # The latest add_to_cart decides: an early one does not hide a rapid one.
    both = browsing(
        (T0 - 10 * MIN, "s1", "p1", "add_to_cart"),
        (T0 - timedelta(seconds=1.2), "s1", "p1", "add_to_cart"),
    )
    out = run(p, clicks=both)
    assert reasons(out, "rapid_checkout") == ["add_to_cart 1.2 s before purchase; threshold 3 s"]
    assert flagged(out, "purchase_without_browsing") == []


def test_normal_shopping_triggers_no_rule() -> None:
    p = purchases(
        *baseline(30),
        {"event_time": T0, "unit_price": 120.0},
        {"event_time": T0 + 5 * MIN, "order_id": "o30", "product_id": "p2"},
    )
    views = browsing(
        *((r["event_time"] - MIN, "s1", "p1", "page_view") for r in baseline(30)),
        (T0 - 4 * MIN, "s1", "p1", "page_view"),
        (T0 + 2 * MIN, "s1", "p2", "page_view"),
    )
    clicks = browsing(
        (T0 - 10 * SEC, "s1", "p1", "add_to_cart"), (T0 + 4 * MIN, "s1", "p2", "add_to_cart")
    )
    assert run(p, views, clicks).height == 0


# -- hours, output shape, empties ---------------------------------------------------------------


def test_hours_restrict_the_output_while_context_rows_before_still_count() -> None:
    burst = purchases(*({"event_time": T0 + 55 * MIN + i * MIN} for i in range(7)))
    out = run(burst, hours=["2026-03-01-11:00"])
    # 10:55..10:59 are context; 11:00 is the 6th purchase in its window, 11:01 the 7th.
    assert flagged(out, "velocity") == ["e5", "e6"]
    assert set(out["event_hour"]) == {11}
    assert set(run(burst, hours=["2026-03-01-10:00"])["event_hour"]) == {10}
    assert run(burst, hours=["2026-03-01-09:00"]).height == 0
    with pytest.raises(ValueError, match="hour partition key"):
        run(burst, hours=["2026-03-01-11:30"])


def test_output_has_the_schema_partition_columns_and_order() -> None:
    p = purchases(
        {"event_time": T0 + 90 * MIN, "event_id": "z"}, {"event_time": T0, "event_id": "y"}
    )
    out = run(p, clicks=browsing((T0 - SEC, "s1", "p1", "add_to_cart")))
    assert out.columns == FRAUD_FLAGS_SCHEMA.names
    assert out.select("event_id", "rule").rows() == [
        ("y", "rapid_checkout"),
        ("z", "purchase_without_browsing"),
    ]
    assert out["event_date"].to_list() == [date(2026, 3, 1)] * 2
    assert out["event_hour"].to_list() == [10, 11]
    assert set(out["detected_at"]) == {NOW}
    assert set(out["rule"]) <= set(FRAUD_RULES)
    assert to_arrow(out, FRAUD_FLAGS_SCHEMA).schema == FRAUD_FLAGS_SCHEMA


def test_every_flag_scores_above_zero_and_at_most_one() -> None:
    rows = [
        {"event_time": T0 + i * SEC, "payment_method": m, "ip_address": "1.2.3.4"}
        for i, m in enumerate(["card", "paypal", "gift_card", "card", "card"])
    ]
    out = run(purchases(*rows), clicks=browsing((T0, "s1", "p1", "add_to_cart")))
    assert {"velocity", "payment_hopping", "rapid_checkout"} <= set(out["rule"])
    assert all(0 < score <= 1 for score in out["score"].to_list())


def test_empty_inputs_give_an_empty_frame_of_the_schema() -> None:
    empty = run(purchases(), NO_BROWSING, NO_BROWSING)
    assert empty.height == 0
    assert empty.columns == FRAUD_FLAGS_SCHEMA.names
    assert to_arrow(empty, FRAUD_FLAGS_SCHEMA).schema == FRAUD_FLAGS_SCHEMA
    # Empty frames without any columns, e.g. an hour that has no page views yet.
    out = run(purchases({"event_time": T0}), pl.DataFrame(), pl.DataFrame())
    assert flagged(out, "purchase_without_browsing") == ["e0"]
    with pytest.raises(ValueError, match="ip_address"):
        run(purchases({"event_time": T0}).drop("ip_address"))


# -- thresholds --------------------------------------------------------------------------------


def test_thresholds_from_env_read_counts_factors_and_seconds() -> None:
    th = FraudThresholds.from_env(
        {
            "TIDELAKE_FRAUD_VELOCITY_COUNT": "3",
            "TIDELAKE_FRAUD_VELOCITY_WINDOW_SECONDS": "90",
            "TIDELAKE_FRAUD_HIGH_VALUE_FACTOR": "4.5",
            "TIDELAKE_FRAUD_RAPID_CHECKOUT_SECONDS": "1.5",
            "TIDELAKE_FRAUD_IP_USERS": " ",
        }
    )
    assert th == FraudThresholds(
        velocity_count=3,
        velocity_window=timedelta(seconds=90),
        high_value_factor=4.5,
        rapid_checkout=timedelta(seconds=1.5),
    )
    assert FraudThresholds.from_env({}) == FraudThresholds()
    names = set(FraudThresholds.env_names().values())
    assert {"TIDELAKE_FRAUD_IP_WINDOW_SECONDS", "TIDELAKE_FRAUD_HIGH_VALUE_MIN_ORDERS"} <= names
    three = purchases(*({"event_time": T0 + i * 40 * SEC} for i in range(3)))
    assert reasons(run(three, thresholds=th), "velocity") == [
        "3 purchases in 1 min 20 s; threshold 3 in 1 min 30 s"
    ]


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("TIDELAKE_FRAUD_VELOCITY_COUNT", "five"),
        ("TIDELAKE_FRAUD_VELOCITY_COUNT", "0"),
        ("TIDELAKE_FRAUD_IP_USERS", "2.5"),
        ("TIDELAKE_FRAUD_HIGH_VALUE_FACTOR", "-1"),
        ("TIDELAKE_FRAUD_HIGH_VALUE_FACTOR", "nan"),
        ("TIDELAKE_FRAUD_BROWSE_WINDOW_SECONDS", "0"),
        ("TIDELAKE_FRAUD_PAYMENT_WINDOW_SECONDS", "an hour"),
    ],
)
def test_a_bad_threshold_raises_a_config_error_naming_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        FraudThresholds.from_env({name: raw})


def test_context_windows_cover_the_longest_rule_window() -> None:
    assert context_window(FraudThresholds()) == timedelta(hours=24)
    short = FraudThresholds(high_value_lookback=timedelta(minutes=30))
    assert context_window(short) == timedelta(minutes=60)
    assert browse_context(FraudThresholds()) == timedelta(minutes=30)
