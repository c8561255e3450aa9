"""The checks config sections share: typed values, tables of known keys, regexes, CSS selectors (compiled
by the engine that will run them), fields and link rules. Source kinds use them for their own sections.

Every check names the file, the key and what is wrong, because the user reads only that line.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from etl.config.model import ConfigError, FieldSpec, LinkRule
from etl.parse.cleaners import CONVERTERS

_LEXBOR_CONTAINS = re.compile(r":lexbor-contains\b", re.I)


def _selector_problem(exc: Exception) -> str:
    """soupsieve's message is several lines (the selector again, a caret under the error): one line, with
    the column it points at."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    col = getattr(exc, "col", None)
    return f"{first} (at column {col})" if isinstance(col, int) and "position" not in first else first


class Checker:
    def __init__(self, path: str, engine: str = "selectolax") -> None:
        self.path = path
        self.engine = engine  # selectors are checked by the engine that will run them

    def fail(self, where: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.path}: {where}: {msg}")

    def table(self, data: Any, where: str, allowed: set[str], required: set[str] = frozenset()) -> dict:
        if not isinstance(data, dict):
            raise self.fail(where, f"expected a table, got {type(data).__name__}")
        for key in data:
            if key not in allowed:
                raise self.fail(f"{where}.{key}", f"unknown key (allowed: {', '.join(sorted(allowed))})")
        for key in required:
            if key not in data:
                raise self.fail(where, f"missing required key '{key}'")
        return data

    def typed(self, data: dict, key: str, where: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        value = data.get(key, default)
        if value is None:
            return None
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and kind in (int, float):
            raise self.fail(f"{where}.{key}", f"expected {kind.__name__}, got a boolean")
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise self.fail(f"{where}.{key}", f"expected {names}, got {type(value).__name__} {value!r}")
        return value

    def regex(self, value: str | None, where: str) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise self.fail(where, f"invalid regex: {exc}") from None
        return value

    def css(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, "expected a non-empty CSS selector")
        if self.engine != "bs4" and _LEXBOR_CONTAINS.search(value):
            raise self.fail(where, f"{value!r}: ':lexbor-contains' matches only an element's own first text, so "
                                   "it finds nothing where the text is in a child; pick a field by the text "
                                   "next to it with label = \"…\"")
        try:
            if self.engine == "bs4":
                import soupsieve

                soupsieve.compile(value)
            else:
                from selectolax.lexbor import LexborHTMLParser

                LexborHTMLParser("<p></p>").css(value)
        except Exception as exc:  # both raise on selectors they cannot compile
            raise self.fail(where, f"invalid CSS selector {value!r} for the {self.engine} engine: "
                                   f"{_selector_problem(exc)}") from None
        return value

    def field(self, name: str, data: Any, where: str, default_source: str) -> FieldSpec:
        if isinstance(data, str):
            data = {"css": data}
        d = self.table(data, where, {"css", "attr", "json", "regex", "type", "scale", "value", "from", "all",
                                           "required", "format", "label"})
        label = self.typed(d, "label", where, str)
        if label is not None:
            label = " ".join(label.split()).rstrip(" :：")  # as the page's text is compared: collapsed
        if label is not None and (not label or "attr" in d):
            raise self.fail(f"{where}.label", "a non-empty label text, without 'attr' (the value is the text "
                                              "next to the label)")
        ftype = self.typed(d, "type", where, str, "text")
        if ftype not in CONVERTERS:
            raise self.fail(f"{where}.type", f"unknown type {ftype!r} (use {', '.join(CONVERTERS)})")
        source = self.typed(d, "from", where, str, "config" if "value" in d else default_source)
        if source not in ("item", "detail", "page", "config") and not re.fullmatch(r"facet:[\w.-]+", source):
            raise self.fail(f"{where}.from", f"unknown source {source!r} "
                                             "(use item, detail, page, config or facet:<kind>)")
        scale = d.get("scale")
        if scale is not None:
            try:
                if isinstance(scale, bool):
                    raise ValueError
                Decimal(str(scale))
            except (ValueError, InvalidOperation):
                raise self.fail(f"{where}.scale", f"expected a number, got {scale!r}") from None
        fmt = self.typed(d, "format", where, str)
        if fmt is not None and (ftype != "date" or "%" not in fmt):
            raise self.fail(f"{where}.format", "only for type = \"date\": a strptime format such as \"%d/%m/%Y\"")
        css = self.css(d["css"], f"{where}.css") if "css" in d else None
        if (source != "config" and not source.startswith("facet:") and css is None and "attr" not in d
                and "regex" not in d and "json" not in d and label is None):
            raise self.fail(where, "needs a 'css' selector or a 'label' (or 'attr'/'regex' on the item itself, "
                                   "or 'value')")
        return FieldSpec(name=name, css=css, attr=self.typed(d, "attr", where, str),
                         json=self.typed(d, "json", where, str),
                         regex=self.regex(self.typed(d, "regex", where, str), f"{where}.regex"),
                         type=ftype, scale=None if scale is None else str(scale),
                         value=None if d.get("value") is None else str(d["value"]), source=source,
                         all=bool(self.typed(d, "all", where, bool, False)),
                         required=bool(self.typed(d, "required", where, bool, False)), format=fmt,
                         label=label)

    def link(self, data: Any, where: str, default_kind: str | None = None) -> LinkRule:
        if isinstance(data, str):
            data = {"css": data}
        d = self.table(data, where, {"css", "kind", "attr", "match"}, {"css"})
        kind = self.typed(d, "kind", where, str, default_kind)
        if not kind:
            raise self.fail(where, "missing required key 'kind' (the kind of page the links lead to)")
        return LinkRule(css=self.css(d["css"], f"{where}.css"), kind=kind,
                        attr=self.typed(d, "attr", where, str, "href"),
                        match=self.regex(self.typed(d, "match", where, str), f"{where}.match"))


def expand(template: str, variables: dict[str, Any], where: str, ck: Checker) -> str:
    try:
        return template.format_map(variables)
    except KeyError as exc:
        raise ck.fail(where, f"unknown placeholder {{{exc.args[0]}}} (known: {', '.join(sorted(variables))})") from None
    except (ValueError, IndexError) as exc:
        raise ck.fail(where, f"bad placeholder in {template!r}: {exc}") from None


