"""Loading a job config: read the TOML file, apply the environment and the command line, then check it.

Precedence, lowest first: the file, environment (ETL_DATABASE_URL), then the CLI (--db, --set k=v).
Every problem a user can fix is raised as one ConfigError line naming the file, the key and what is wrong;
the CLI turns it into exit code 2. Config files are data only: nothing in them is executed.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any

from etl.config.model import DEFAULTS, Config, ConfigError


def parse_value(text: str) -> Any:
    """`--set` values are TOML literals when they parse as one (8, true, 1.5, [..]), else plain strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _scalar_paths(node: dict[str, Any], key: str, prefix: str = "") -> list[str]:
    """Dotted paths of every scalar setting named `key` in nested tables (arrays of tables are not searched)."""
    out = []
    for name, value in node.items():
        if isinstance(value, dict):
            out += _scalar_paths(value, key, f"{prefix}{name}.")
        elif name == key and prefix and not isinstance(value, list):
            out.append(prefix + name)
    return out


def apply_override(raw: dict[str, Any], assignment: str, path: str) -> None:
    """Apply one `key=value`. A bare key is looked up among the sections' scalar keys (city → source.city)."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment}: expected key=value")
    key, _, text = assignment.partition("=")
    key = key.strip()
    value = parse_value(text.strip())
    parts = key.split(".")
    if len(parts) == 1 and key not in raw:
        owners = _scalar_paths(raw, key)  # anywhere in the file, nested tables included
        owners += [f"{name}.{key}" for name in DEFAULTS if key in DEFAULTS[name] and f"{name}.{key}" not in owners]
        if len(owners) > 1:
            raise ConfigError(f"--set {key}: ambiguous, say which: {', '.join(owners)}")
        if not owners:
            raise ConfigError(f"--set {key}: no such setting in {path}; use a dotted path such as source.{key}")
        parts = owners[0].split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part} is not a table")
    node[parts[-1]] = value


MAX_CONFIG_BYTES = 1_000_000  # a job config is a page of TOML; anything bigger is not one


def _read(path: str) -> dict[str, Any]:
    """The file's TOML tables. Only a regular file under MAX_CONFIG_BYTES is read: /dev/zero, a FIFO or a
    directory would otherwise read forever, block forever or give a traceback."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: not a regular file")
    if st.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {st.st_size:,} bytes; a config is at most {MAX_CONFIG_BYTES:,}")
    try:
        with open(path, "rb") as fh:
            return tomllib.loads(fh.read(MAX_CONFIG_BYTES + 1).decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def load(path: str | Path, overrides: list[str] = (), database_url: str | None = None) -> Config:
    """Read, override and validate a job config. Raises ConfigError with one clear line."""
    path = str(path)
    raw = _read(path)
    env_db = os.environ.get("ETL_DATABASE_URL")
    if env_db:
        raw.setdefault("database", {})["url"] = env_db
    for assignment in overrides:
        apply_override(raw, assignment, path)
    if database_url:
        raw.setdefault("database", {})["url"] = database_url
    from etl.config.build import build

    return build(raw, path)
