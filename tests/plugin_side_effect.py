"""A plugin module with an import side effect: it writes the file ETL_PLUGIN_MARK names, when imported."""

import os

if os.environ.get("ETL_PLUGIN_MARK"):
    with open(os.environ["ETL_PLUGIN_MARK"], "a") as fh:
        fh.write(f"imported in {os.getpid()}\n")

NOT_A_FUNCTION = 42


def keep(row: dict) -> dict:
    return row
