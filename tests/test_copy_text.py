"""The writer's COPY text, encoded a column at a time, is exactly the value-by-value encoding
(copy_value), whatever the mix of kinds in a column; and the prebuilt JSON encoders give json.dumps's text."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import operator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl import jsontext
from etl.dialects.postgresql import PostgreSQLDialect, copy_lines, copy_value
from tests.test_mysql import check_update_by_key

SPECIAL = st.sampled_from(["\\", "\t", "\n", "\r", "\x00", "a", "北", ""])
TEXT = st.one_of(st.text(max_size=12), st.lists(SPECIAL, max_size=4).map("".join))
JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), TEXT),
                    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
                    max_leaves=6)
VALUE = st.one_of(
    st.none(), TEXT, st.integers(), st.floats(), st.booleans(), st.decimals(allow_nan=False),
    st.dates(), st.datetimes(timezones=st.just(dt.UTC)), JSON,
)
COLUMNS = ["a", "b", "c"]


def one_by_one(rows: list[dict], columns: list[str], tail: str) -> str:
    get = operator.itemgetter(*columns)
    if len(columns) == 1:
        return "".join(copy_value(get(row)) + tail for row in rows)
    return "".join("\t".join(map(copy_value, get(row))) + tail for row in rows)


def column_of(kind: st.SearchStrategy) -> st.SearchStrategy:
    """Columns of one kind with NULLs sometimes (the common case), or of any mix."""
    return st.one_of(st.one_of(st.none(), kind), VALUE)


ROW = st.fixed_dictionaries({"a": column_of(TEXT), "b": column_of(st.integers() | st.floats()), "c": VALUE})


@settings(max_examples=300, deadline=None)
@given(st.lists(ROW, max_size=8), st.sampled_from([["a"], ["a", "b"], COLUMNS]),
       st.sampled_from(["\n", "\t7\t2026-01-01\n"]))
def test_column_wise_copy_text_is_the_value_by_value_text(rows, columns, tail):
    assert copy_lines(rows, columns, tail) == one_by_one(rows, columns, tail)


def test_a_column_of_plain_text_with_one_special_value_escapes_that_value_only():
    rows = [{"a": "x"}, {"a": "tab\there"}, {"a": None}, {"a": "back\\slash"}]
    assert copy_lines(rows, ["a"]) == "x\ntab\\there\n\\N\nback\\\\slash\n"


def test_bulk_encoding_of_row_tuples_is_the_value_by_value_text():
    rows = [(1, "a\tb", None, decimal.Decimal("1.50"), dt.date(2026, 1, 2)), (2, "c", 3.5, None, None)]
    expected = "".join("\t".join(map(copy_value, row)) + "\n" for row in rows)
    assert PostgreSQLDialect().encode_bulk(["w", "x", "y", "z", "d"], rows) == expected
    assert PostgreSQLDialect().encode_bulk(["w"], []) == ""


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_prebuilt_json_encoders_give_json_dumps_text(value):
    assert jsontext.text(value) == json.dumps(value, ensure_ascii=False)
    assert jsontext.text_or_str(value) == json.dumps(value, ensure_ascii=False, default=str)
    assert jsontext.canonical(value) == json.dumps(value, sort_keys=True, ensure_ascii=False,
                                                   separators=(",", ":"), default=str)
    assert jsontext.sorted_text(value) == json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def test_prebuilt_json_encoders_fall_back_to_str_for_other_values():
    when = dt.date(2026, 1, 2)
    assert jsontext.text_or_str({"d": when}) == '{"d": "2026-01-02"}'
    assert jsontext.canonical({"b": 1, "a": when}) == '{"a":"2026-01-02","b":1}'


@pytest.mark.postgres
def test_update_by_key_through_a_copied_stage_changes_only_existing_keys_of_its_run(pg_url: str) -> None:
    check_update_by_key(pg_url)
