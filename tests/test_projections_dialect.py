"""The read model's statements in two dialects: parameter markers are converted only where
they are markers, and every PostgreSQL twin takes the parameters its SQLite statement does."""

from __future__ import annotations

import re

import pytest

import projections  # noqa: F401 (registers every twin)
from projections import pgreadmodel  # noqa: F401 (and the transaction twins)
from projections.dialect import TWINS, pyformat


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT a FROM t WHERE b = ?", "SELECT a FROM t WHERE b = %s"),
        ("SELECT '?', \"?\" FROM t WHERE b = ?", "SELECT '?', \"?\" FROM t WHERE b = %s"),
        ("SELECT 'it''s ?' WHERE x = ?", "SELECT 'it''s ?' WHERE x = %s"),
        ("SELECT x::jsonb FROM t WHERE k = :key", "SELECT x::jsonb FROM t WHERE k = %(key)s"),
        ("SELECT :ids::jsonb", "SELECT %(ids)s::jsonb"),
        ("SELECT ':no' WHERE a LIKE 'x%' AND b = ?", "SELECT ':no' WHERE a LIKE 'x%%' AND b = %s"),
        ("SELECT 5 % 2 -- what? :x\n, ?", "SELECT 5 %% 2 -- what? :x\n, %s"),
    ],
)
def test_markers_are_converted_only_outside_quotes_and_comments(sql: str, expected: str) -> None:
    assert pyformat(sql) == expected


def _markers(sql: str) -> tuple[int, list[str]]:
    """(positional markers, named markers in order) of a converted statement."""
    return sql.count("%s"), re.findall(r"%\((\w+)\)s", sql)


@pytest.mark.parametrize("sqlite", sorted(TWINS), ids=lambda s: " ".join(s.split())[:50])
def test_each_twin_takes_the_parameters_of_its_statement(sqlite: str) -> None:
    postgres = TWINS[sqlite]
    assert _markers(pyformat(postgres)) == _markers(pyformat(sqlite))
    # A template formatted with a tenant's slot names the same fields in both.
    assert set(re.findall(r"(?<!\{)\{(\w+)\}(?!\})", sqlite)) >= set(
        re.findall(r"(?<!\{)\{(\w+)\}(?!\})", postgres)
    ) - {"slot"}
