"""The DuckDB validation query of a topic: every contract rule, in :class:`QuarantineReason` order.

:func:`build_query` returns one query over a registered Arrow table ``chunk`` (columns ``idx``,
``oversize``, ``raw``, ``key``) with the parameters ``$ingested_at`` and ``$max_bytes``. It
yields one row per input row with ``idx``, ``error`` (a reason code, NULL when valid),
``error_detail``, ``key_text``, ``key_base64`` and one column per contract field, typed.

Facts about DuckDB's JSON reader (duckdb 2.0.1) that the rules rely on:

* JSON types: non-negative integers are ``UBIGINT``, negative ones ``BIGINT``; an integer beyond
  uint64 (or below int64) is ``DOUBLE``, and so are ``1e400`` (+inf), ``-1e400`` (-inf) and the
  non-JSON literals ``NaN`` / ``Infinity`` the parser accepts.
* ``from_json(..., BIGINT)`` yields NULL for a ``UBIGINT`` above int64: without a rule such a
  value would land as NULL in a non-nullable column.
* With duplicate keys, extraction returns the *first* value while other readers (Python's
  ``json``, for one) keep the last, so such an object has no single meaning.
* ``json_extract`` renders a big integer with its digits as written (``2**64`` stays exact) and
  a double in its shortest form (``1E30`` → ``1e30``); details quote numbers that way.
* A lone surrogate escape (``"\\ud800"``) makes the whole parse fail (``malformed_json``); an
  escaped NUL (``"\\u0000"``) is a valid character and is kept.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tidelake.contracts import Field, QuarantineReason, TopicContract

MIN_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
"""Earliest ``event_time`` accepted; anything before is an absurd timestamp (a zeroed clock)."""

INT64_LIMIT = 9223372036854775808.0
"""2**63: a JSON number whose magnitude reaches this does not fit a 64-bit integer column."""

UUID_RE = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
RFC3339_RE = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
"""RFC 3339 ``date-time``: seconds are required, fractions optional, the zone is ``Z`` or an
offset. (RE2's ``\\d`` is ASCII only, so no other script's digits slip through.)"""

_JSON_TYPES: dict[str, tuple[str, ...]] = {
    "string": ("VARCHAR",),
    "timestamp": ("VARCHAR",),
    "int": ("BIGINT", "UBIGINT"),
    "float": ("BIGINT", "UBIGINT", "DOUBLE"),
}
_KIND_NAMES = {"string": "string", "timestamp": "string", "int": "integer", "float": "number"}
_SQL_TYPES = {"string": "VARCHAR", "timestamp": "VARCHAR", "int": "BIGINT", "float": "DOUBLE"}


def sql_str(s: str) -> str:
    """``s`` as a SQL string literal."""
    return "'" + s.replace("'", "''") + "'"


_TS_HINT = sql_str(" is not RFC 3339 with a zone (YYYY-MM-DDTHH:MM:SS[.fraction] then Z or ±hh:mm)")
"""What an invalid timestamp's detail adds: the shape expected (seconds are required)."""


def _q(prefix: str, f: Field) -> str:
    """The quoted name of a per-field column of the query (``t_``, ``v_``, ``io_``, ...)."""
    return f'"{prefix}_{f.name}"'


def _absent(f: Field) -> str:
    t = _q("t", f)
    return f"({t} IS NULL OR {t} = 'NULL')"


def _wrong(f: Field) -> str:
    """The field has a JSON type its kind does not accept.

    An integral ``DOUBLE`` beyond the int64 range in an ``int`` field is not a type error: it
    is an integer that does not fit, so ``out_of_range`` reports it (see :func:`_int_overflow`).
    """
    t = _q("t", f)
    allowed = ", ".join(sql_str(x) for x in _JSON_TYPES[f.kind])
    wrong = f"({t} <> 'NULL' AND {t} NOT IN ({allowed}))"
    if f.kind == "int":
        wrong = f"({wrong} AND NOT {_q('io', f)})"
    return wrong


def _int_overflow(f: Field) -> str:
    """An ``int`` field whose JSON number is outside the int64 range: a ``UBIGINT`` the BIGINT
    cast turned into NULL, or a ``DOUBLE`` (NaN aside) with magnitude >= 2**63.

    The ``DOUBLE`` value is re-extracted only for rows of that JSON type (CASE is evaluated
    lazily per row), so the common case pays nothing.
    """
    t, v = _q("t", f), _q("v", f)
    d = f"TRY_CAST(json_extract(txt, {sql_str('$.' + f.name)}) AS DOUBLE)"
    return (
        f"CASE WHEN {t} = 'UBIGINT' THEN {v} IS NULL "
        f"WHEN {t} = 'DOUBLE' THEN coalesce(NOT isnan({d}) AND abs({d}) >= {INT64_LIMIT!r}, FALSE) "
        f"ELSE FALSE END"
    )


def _range_rules(contract: TopicContract) -> list[tuple[str, str]]:
    """``(condition, detail)`` of every ``out_of_range`` rule, in the order details are listed."""
    by_name = {f.name: f for f in contract.all_fields}
    rules: list[tuple[str, str]] = []
    for f in contract.all_fields:
        if f.kind == "int":
            text = f"CAST(json_extract(txt, {sql_str('$.' + f.name)}) AS VARCHAR)"
            rules.append(
                (
                    _q("io", f),
                    f"{sql_str(f.name + '=')} || {text} || ' is outside the 64-bit integer range'",
                )
            )
        elif f.kind == "float":
            rules.append(
                (
                    _q("nf", f),
                    f"{sql_str(f.name + '=')} || CAST({_q('v', f)} AS VARCHAR) "
                    f"|| ' is not a finite number'",
                )
            )
    domain = [(n, ">= 0") for n in contract.non_negative] + [(n, "> 0") for n in contract.positive]
    for name, op in domain:
        f = by_name[name]
        v = _q("v", f)
        # A non-finite float already has its own rule; NaN would even pass `>= 0` in DuckDB.
        finite = f"isfinite({v}) AND " if f.kind == "float" else ""
        rules.append(
            (
                f"coalesce({finite}NOT ({v} {op}), FALSE)",
                f"{sql_str(name + ' must be ' + op + ', got ')} || CAST({v} AS VARCHAR)",
            )
        )
    return rules


def build_query(contract: TopicContract, max_future_seconds: float) -> str:
    """The validation query for one topic. Rules apply in :class:`QuarantineReason` order.

    Args:
        contract: the topic's contract.
        max_future_seconds: an ``event_time`` more than this after ingestion is absurd.
    """
    fields = contract.all_fields
    ints = [f for f in fields if f.kind == "int"]
    floats = [f for f in fields if f.kind == "float"]
    ts_fields = [f for f in fields if f.kind == "timestamp"]
    # Two reads of one record: the JSON type of every field (one parse, to check types strictly)
    # and the values cast to the contract types (lenient; only used once the types check out).
    paths = "[" + ", ".join(sql_str(f"$.{f.name}") for f in fields) + "]"
    typed_spec = "{" + ",".join(f'"{f.name}":"{_SQL_TYPES[f.kind]}"' for f in fields) + "}"
    type_cols = ",\n".join(f"types[{i}] AS {_q('t', f)}" for i, f in enumerate(fields, start=1))
    value_cols = ",\n".join(f'v."{f.name}" AS {_q("v", f)}' for f in fields)
    # Duplicate keys. Every contract field that is present is one distinct top-level key, so a
    # key list no longer than that count has no duplicate; only longer lists (extra fields or
    # duplicates) are searched, lazily. The key list replaces the top-level json_type() parse
    # (an empty list means "not an object": json_type() then runs for those rows only), so it
    # costs one list per row, not another parse: +1-9% of decode instructions by topic
    # (cachegrind, simulator records). Bounding the key count by counting quotes instead
    # (DuckDB replace() or Arrow count_substring) measured 2-4x dearer than json_keys().
    present = " + ".join(f"({_q('t', f)} IS NOT NULL)::INTEGER" for f in fields)
    dup_keys = (
        f"CASE WHEN len(keys) > ({present}) THEN list_sort(list_distinct("
        "list_filter(keys, lambda k, i: list_position(keys, k) < i))) END AS dup_keys"
    )
    rule_cols: list[str] = []
    for f in ts_fields:
        v = _q("v", f)
        rule_cols.append(
            f"TRY_CAST({v} AS TIMESTAMPTZ) AS {_q('ts', f)}, "
            f"regexp_full_match({v}, {sql_str(RFC3339_RE)}) AS {_q('rx', f)}"
        )
    rule_cols += [f"{_int_overflow(f)} AS {_q('io', f)}" for f in ints]
    rule_cols += [f"coalesce(NOT isfinite({_q('v', f)}), FALSE) AS {_q('nf', f)}" for f in floats]

    missing = [f for f in fields if not f.nullable]
    missing_any = " OR ".join(_absent(f) for f in missing) or "FALSE"
    missing_list = ", ".join(f"CASE WHEN {_absent(f)} THEN {sql_str(f.name)} END" for f in missing)
    wrong_any = " OR ".join(_wrong(f) for f in fields) or "FALSE"
    wrong_list = ", ".join(
        f"CASE WHEN {_wrong(f)} THEN "
        f"{sql_str(f.name + ' (expected ' + _KIND_NAMES[f.kind] + ', got ')} "
        f"|| lower({_q('t', f)}) || ')' END"
        for f in fields
    )
    ts_bad_parts = []
    ts_bad_list = []
    for f in ts_fields:
        v = _q("v", f)
        bad = f"({v} IS NOT NULL AND (NOT {_q('rx', f)} OR {_q('ts', f)} IS NULL))"
        ts_bad_parts.append(bad)
        ts_bad_list.append(f"CASE WHEN {bad} THEN {sql_str(f.name + '=')} || {v} || {_TS_HINT} END")
    ts_bad = " OR ".join(ts_bad_parts) or "FALSE"
    range_rules = _range_rules(contract)
    range_bad = " OR ".join(cond for cond, _ in range_rules) or "FALSE"
    range_list = ", ".join(f"CASE WHEN {cond} THEN {text} END" for cond, text in range_rules)
    event_types = ", ".join(sql_str(t) for t in sorted(contract.event_types))
    min_time = MIN_EVENT_TIME.isoformat()
    horizon = f"to_microseconds(CAST({int(max_future_seconds * 1e6)} AS BIGINT))"
    rule_sql = ",\n".join(rule_cols)
    R = QuarantineReason
    return f"""
WITH src AS (
  SELECT idx, oversize, key, try(decode(key)) AS key_utf8,
         CASE WHEN oversize OR raw IS NULL THEN NULL ELSE try(decode(raw)) END AS txt
  FROM chunk
), parsed AS (
  SELECT idx, oversize, key, key_utf8, txt,
         try(json_keys(txt)) AS keys,
         try(json_type(txt, {paths})) AS types,
         try(from_json(txt, {sql_str(typed_spec)})) AS v
  FROM src
), typed AS (
  SELECT idx, oversize, key, key_utf8, txt, keys,
         CASE WHEN len(keys) > 0 THEN 'OBJECT' WHEN keys IS NOT NULL THEN json_type(txt) END AS jt,
{type_cols},
{value_cols}
  FROM parsed
), stamped AS (
  SELECT *,
{rule_sql}
  FROM typed
), keyed AS (
  SELECT *, {dup_keys}
  FROM stamped
), judged AS (
  SELECT *,
    CASE
      WHEN oversize THEN '{R.OVERSIZED}'
      WHEN txt IS NULL THEN '{R.INVALID_UTF8}'
      WHEN jt IS NULL OR len(dup_keys) > 0 THEN '{R.MALFORMED_JSON}'
      WHEN jt <> 'OBJECT' THEN '{R.NOT_AN_OBJECT}'
      WHEN {missing_any} THEN '{R.MISSING_FIELD}'
      WHEN {wrong_any} THEN '{R.WRONG_TYPE}'
      WHEN NOT regexp_full_match("v_event_id", {sql_str(UUID_RE)}) THEN '{R.INVALID_EVENT_ID}'
      WHEN "v_event_type" NOT IN ({event_types}) THEN '{R.UNKNOWN_EVENT_TYPE}'
      WHEN {ts_bad} THEN '{R.INVALID_TIMESTAMP}'
      WHEN "ts_event_time" < TIMESTAMPTZ '{min_time}'
        OR "ts_event_time" > $ingested_at::TIMESTAMPTZ + {horizon}
        THEN '{R.ABSURD_TIMESTAMP}'
      WHEN {range_bad} THEN '{R.OUT_OF_RANGE}'
    END AS error
  FROM keyed
)
SELECT idx, error,
  coalesce(key_utf8, to_base64(key)) AS key_text,
  (key IS NOT NULL AND key_utf8 IS NULL) AS key_base64,
  CASE error
    WHEN '{R.OVERSIZED}' THEN 'message larger than the limit of ' || $max_bytes || ' bytes'
    WHEN '{R.INVALID_UTF8}' THEN 'value is empty or not UTF-8 text'
    WHEN '{R.MALFORMED_JSON}' THEN CASE WHEN jt IS NULL THEN 'value is not valid JSON'
      ELSE 'duplicate key(s) in the object: ' || array_to_string(dup_keys, ', ') END
    WHEN '{R.NOT_AN_OBJECT}' THEN 'JSON value is ' || CASE lower(jt)
      WHEN 'array' THEN 'an array' WHEN 'varchar' THEN 'a string' WHEN 'boolean' THEN 'a boolean'
      WHEN 'null' THEN 'null' ELSE 'a number' END || ', not an object'
    WHEN '{R.MISSING_FIELD}' THEN 'missing required field(s): ' || concat_ws(', ', {missing_list})
    WHEN '{R.WRONG_TYPE}' THEN 'wrong type: ' || concat_ws(', ', {wrong_list})
    WHEN '{R.INVALID_EVENT_ID}' THEN 'event_id ' || "v_event_id" || ' is not a UUID'
    WHEN '{R.UNKNOWN_EVENT_TYPE}' THEN 'event_type ' || "v_event_type"
      || ' is not one of [{", ".join(sorted(contract.event_types))}] for this topic'
    WHEN '{R.INVALID_TIMESTAMP}' THEN concat_ws('; ', {", ".join(ts_bad_list) or "NULL"})
    WHEN '{R.ABSURD_TIMESTAMP}' THEN 'event_time ' || "v_event_time"
      || ' is before {min_time[:10]} or more than {max_future_seconds:g} s after ingestion'
    WHEN '{R.OUT_OF_RANGE}' THEN concat_ws('; ', {range_list or "NULL"})
  END AS error_detail,
  {", ".join(_typed_output(f) for f in fields)}
FROM judged
"""


def _typed_output(f: Field) -> str:
    if f.kind == "timestamp":
        return f'CASE WHEN error IS NULL THEN {_q("ts", f)} END AS "{f.name}"'
    return f'{_q("v", f)} AS "{f.name}"'
