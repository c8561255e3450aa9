"""Every SQL example in the README's "Stock mentions" and "Example queries on listings" sections runs as
written on SQLite, PostgreSQL and MySQL against the data the bundled jobs produce, and returns rows."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import text

from etl import cli
from etl.db import make_engine
from tests.conftest import ROOT

SECTIONS = ("## Stock mentions", "## Example queries on listings")


def readme_queries() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    queries = []
    for title in SECTIONS:
        start = readme.index(title)
        end = readme.find("\n## ", start + len(title))
        for block in re.findall(r"```sql\n(.*?)```", readme[start:end], flags=re.S):
            body = "\n".join(line for line in block.splitlines() if not line.strip().startswith("--"))
            queries += [q.strip() for q in body.split(";") if q.strip()]
    return queries


def test_the_sections_have_queries() -> None:
    assert len(readme_queries()) >= 6


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("mysql", marks=pytest.mark.mysql)])
def filled(request: pytest.FixtureRequest, tmp_path) -> str:
    url = (f"sqlite:///{tmp_path / 'etl.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url" if request.param == "postgres" else "mysql_url"))
    assert cli.main(["run", str(ROOT / "config/demo.toml"), "--db", url, "--quiet",
                     "--set", "source.demo.listings=300"]) == 0
    assert cli.main(["run", str(ROOT / "config/news-stocks.toml"), "--db", url, "--quiet",
                     "--set", "source.demo.news=3000", "--set", "source.sql.chunk_rows=1000"]) == 0
    return url


def test_readme_queries_run_on_every_database(filled: str) -> None:
    engine = make_engine(filled)
    try:
        with engine.connect() as conn:
            for sql in readme_queries():
                rows = conn.execute(text(sql)).all()
                assert rows, f"no rows from: {sql}"
    finally:
        engine.dispose()
