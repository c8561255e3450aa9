"""The files source end to end: a news export (CSV, JSON Lines, Parquet; local or over HTTP) with its own
column names → the stock-mention job → stock_mentions equal to the generator's truth, read in many chunks."""

from __future__ import annotations

import csv
import http.server
import json
import threading
from pathlib import Path

import pytest

from etl import cli, config
from etl.demo.news import generate_articles
from etl.pipeline import run_job
from etl.progress import Progress
from tests.test_e2e_listings import table
from tests.test_e2e_stocks import check_against_truth, mentions

ARTICLES = 1500
HEADER = ["art_id", "pub_date", "headline", "content", "sentiment"]


def export(path: Path, n: int = ARTICLES, bad: dict[int, str] | None = None) -> Path:
    """The generator's articles as a user's export would hold them, under the user's column names
    (`bad`: raw lines written before the record of that index)."""
    arts = generate_articles(n)
    records = [{"art_id": a.id, "pub_date": a.published.isoformat(), "headline": a.title, "content": a.body,
                "sentiment": a.score} for a in arts]
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, HEADER)
            writer.writeheader()
            for i, record in enumerate(records):
                fh.write((bad or {}).get(i, ""))
                writer.writerow(record)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), path, row_group_size=200)
    return path


def job(tmp_path: Path, path: str, chunk_bytes: int = 64 * 1024) -> Path:
    cfg = tmp_path / "news-file.toml"
    cfg.write_text(f"""
job = "news-file"
[source]
type = "files"
[source.files]
path = "{path}"
chunk_bytes = {chunk_bytes}
columns = {{ id = "art_id", published = "pub_date", title = "headline", body = "content", score = "sentiment" }}
[transform]
type = "stock_mentions"
text_fields = ["title", "body"]
[target]
table = "stock_mentions"
[run]
parse_processes = 2
""")
    return cfg


def run(cfg_path: Path, db_url: str):
    cfg = config.load(str(cfg_path), database_url=db_url)
    return run_job(cfg, progress=Progress(enabled=False))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_news_export_to_mentions(tmp_path: Path, sqlite_url: str, suffix: str) -> None:
    path = export(tmp_path / f"news{suffix}")
    state, stats = run(job(tmp_path, str(path)), sqlite_url)
    assert stats.pages_failed == 0 and state.status == "succeeded"
    assert stats.pages_ok > 3  # read in several chunks, on the process pool
    check_against_truth(sqlite_url, ARTICLES)
    before = mentions(sqlite_url)
    run(job(tmp_path, str(path)), sqlite_url)  # a re-run: the same rows
    assert mentions(sqlite_url) == before


@pytest.mark.parametrize("backend", [pytest.param("pg_url", marks=pytest.mark.postgres),
                                     pytest.param("mysql_url", marks=pytest.mark.mysql)])
def test_news_export_to_mentions_server_databases(tmp_path: Path, backend: str, request) -> None:
    url = request.getfixturevalue(backend)
    path = export(tmp_path / "news.csv")
    run(job(tmp_path, str(path)), url)
    check_against_truth(url, ARTICLES)


def test_a_bad_record_is_that_records_failure(tmp_path: Path, sqlite_url: str) -> None:
    path = export(tmp_path / "news.csv", 300, bad={50: '77777,2026-01-01,"a headline","a body",not-a-number\r\n',
                                                   120: "only,three,fields\r\n"})  # a text score, a short record
    state, stats = run(job(tmp_path, str(path), chunk_bytes=16 * 1024), sqlite_url)
    failures = table(sqlite_url, "SELECT stage, error FROM failures")
    assert len(failures) == 2 and all(f["stage"] == "parse" for f in failures)
    assert any("not a number" in f["error"] for f in failures)
    check_against_truth(sqlite_url, 300)  # every other record still counted


def test_a_file_over_http(tmp_path: Path, sqlite_url: str) -> None:
    served = tmp_path / "www"
    served.mkdir()
    export(served / "news.jsonl")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/news.jsonl"
        cfg = job(tmp_path, url)
        cfg.write_text(cfg.read_text()
                       .replace("chunk_bytes", f'cache_dir = "{tmp_path / "cache"}"\nchunk_bytes'))
        run(cfg, sqlite_url)
    finally:
        server.shutdown()
    check_against_truth(sqlite_url, ARTICLES)
    assert list((tmp_path / "cache").glob("*news.jsonl"))


def test_a_missing_file_is_a_config_error(tmp_path: Path, sqlite_url: str, capsys) -> None:
    code = cli.main(["run", str(job(tmp_path, str(tmp_path / "nope.csv"))), "--db", sqlite_url, "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "nope.csv" in err[0]


@pytest.mark.parametrize("body, fragment", [
    ('[source.files]\npath = "x.csv"\nchunk_bytes = 0', "chunk_bytes"),
    ('[source.files]\npath = "x.csv"\nencoding = "utf-16"', "utf-16"),
    ('[source.files]\npath = "x.csv"\nbogus = 1', "bogus"),
    ('[source.files]\nformat = "csv"', "path"),
])
def test_bad_files_section_is_refused_on_load(tmp_path: Path, body: str, fragment: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f'job = "x"\n[source]\ntype = "files"\n{body}\n[transform]\ntype = "stock_mentions"\n'
                   '[target]\ntable = "stock_mentions"\n')
    with pytest.raises(config.ConfigError, match=fragment):
        config.load(str(cfg))
