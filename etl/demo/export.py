"""`etl demo export-news`: the synthetic news as a user's export file would hold it (CSV, JSON Lines or
Parquet, under its own column names), to try the files source on."""

from __future__ import annotations

import csv
import json
from pathlib import Path

HEADER = ["art_id", "pub_date", "headline", "content", "sentiment"]


def export_news(out: str | Path, rows: int, seed: int = 0) -> int:
    from etl.demo.news import generate_articles

    path = Path(out)
    records = [{"art_id": a.id, "pub_date": a.published.isoformat(), "headline": a.title, "content": a.body,
                "sentiment": a.score} for a in generate_articles(rows, seed=seed)]
    name = path.name.lower()
    if name.endswith((".jsonl", ".ndjson")):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    elif name.endswith((".parquet", ".pq")):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), path, row_group_size=5000)
    else:
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, HEADER, delimiter="\t" if name.endswith(".tsv") else ",")
            writer.writeheader()
            writer.writerows(records)
    return len(records)
