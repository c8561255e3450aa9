"""Plugin functions a config names (`[transform] plugin = "package.module:function"`).

A config file runs no code when it is loaded or checked: the name is only checked for its form there.
The module is imported when a run starts (in the coordinator, before anything is written, so a wrong name
is a one-line config error with exit 2) and again in each parse process, which calls the function.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

from etl.config.model import ConfigError

PLUGIN_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


def plugin_name_problem(name: str | None) -> str | None:
    """Why a plugin name cannot be one, or None (no import happens here)."""
    if not name or not PLUGIN_NAME.fullmatch(name):
        return "name the function as 'package.module:function'"
    return None


def load_plugin(name: str) -> Callable[[dict[str, Any]], Any]:
    """Import the module the config names and return its function; ConfigError in one line otherwise."""
    problem = plugin_name_problem(name)
    if problem:
        raise ConfigError(f"[transform].plugin: {problem}")
    module, _, func = name.partition(":")
    try:
        fn = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"[transform].plugin: cannot import {name}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the module itself failed while importing
        raise ConfigError(f"[transform].plugin: importing {module} failed: {type(exc).__name__}: {exc}") from None
    if not callable(fn):
        raise ConfigError(f"[transform].plugin: {name} is not a function")
    return fn
