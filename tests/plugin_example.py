"""A transform plugin, as a user would write one: named explicitly in a config, imported by the workers."""


def tag_big_flats(row: dict) -> dict | None:
    if (row.get("rooms") or 0) <= 1:
        return None  # drop studios
    row["extras"] = {**(row.get("extras") or {}), "big": (row.get("area_m2") or 0) >= 100}
    return row


def unstorable_now_and_then(row: dict) -> dict:
    """Every 50th listing gets a value no database column can take (sqlite3 refuses a 2**70 integer)."""
    if int(row["listing_id"]) % 50 == 0:
        row["rooms"] = 2**70
    return row
