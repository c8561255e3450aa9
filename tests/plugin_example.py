"""A transform plugin, as a user would write one: named explicitly in a config, imported by the workers."""


def tag_big_flats(row: dict) -> dict | None:
    if (row.get("rooms") or 0) <= 1:
        return None  # drop studios
    row["extras"] = {**(row.get("extras") or {}), "big": (row.get("area_m2") or 0) >= 100}
    return row
