"""What a record from a table or a file becomes before the transform: the names `columns` gives, a
`published` value as a date and a `score` as a number — shared by the kinds that read records (sql, files).
A value that cannot be what its name promises is that record's failure, never the unit's."""

from __future__ import annotations

from typing import Any

from etl.items import Parsed


def shape(record: dict[str, Any], columns: dict[str, str] | None, result: Parsed, where: str) -> None:
    """Append the record, renamed and typed, to result.rows — or a failure line to result.item_errors."""
    from etl.parse.cleaners import to_date

    row = {name: record.get(col) for name, col in columns.items()} if columns else dict(record)
    if "published" in row and row["published"] is not None:
        published = row["published"]
        published = published if hasattr(published, "year") else to_date(str(published))
        if hasattr(published, "date") and callable(published.date):
            published = published.date()
        row["published"] = published
    if row.get("score") is not None and not isinstance(row["score"], int | float):
        try:
            row["score"] = float(str(row["score"]).strip())
        except ValueError:
            result.item_errors.append(f"{where}: score {str(row['score'])[:40]!r} is not a number")
            return
    if isinstance(row.get("score"), int):
        row["score"] = float(row["score"])
    row["news_id"] = row.get("id")
    result.rows.append(row)
