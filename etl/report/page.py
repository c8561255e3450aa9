"""The report as one HTML file: the Vega, Vega-Lite and vega-embed JavaScript inlined (vl-convert bundles
them), so it opens with no network, from a mail attachment or a file share.

Each chart sits in a `div.chart` next to a `table.figures` holding the same numbers as `data-*`
attributes: a reader can copy them, and a test can compare them with its own SQL. When every chart has
rendered, the page sets `<body data-rendered="ok">` (or `"error"` and `data-error`), which is what a
headless browser waits for.
"""

from __future__ import annotations

import html
import json
import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

PAGE_JS = """
const specs = JSON.parse(document.getElementById('report-specs').textContent);
Promise.all(Object.entries(specs).map(([id, spec]) =>
  vegaEmbed('#' + id, spec, {renderer: 'svg', actions: false}).then(() => {
    document.getElementById(id).dataset.rendered = 'ok'; })))
  .then(() => { document.body.dataset.rendered = 'ok'; })
  .catch((e) => { document.body.dataset.rendered = 'error'; document.body.dataset.error = String(e); });
"""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } .meta { color: #666; margin-top: 0; }
section { margin: 2.5em 0; } .caption { color: #444; } .empty { color: #888; font-style: italic; }
table.figures { border-collapse: collapse; font-size: 0.85em; }
table.figures td, table.figures th { border-bottom: 1px solid #ddd; padding: 2px 10px; text-align: right; }
table.figures td:first-child, table.figures th:first-child { text-align: left; }
details { margin-top: 0.8em; }
"""


@dataclass
class Section:
    """One chart (or a sentence saying why there is none) and the figures behind it."""

    key: str
    title: str
    caption: str = ""
    spec: dict[str, Any] | None = None
    empty: str = ""
    columns: list[tuple[str, str]] = field(default_factory=list)  # (row key, heading)
    rows: list[dict[str, Any]] = field(default_factory=list)


@cache
def vega_bundle() -> str:
    """vega + vega-lite + vega-embed as one script, for the Vega-Lite version Altair writes. Bundling takes
    seconds (7–13 s measured here), so the result is kept in the user's cache directory, keyed by the
    versions; a cache that cannot be written only costs the time again."""
    import altair as alt
    import vl_convert as vlc

    wanted = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    known = vlc.get_vegalite_versions()
    version = wanted if wanted in known else known[-1]
    cache_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "etl-crawl"
    path = cache_dir / f"vega-embed-{vlc.get_vega_embed_version()}-vega-{vlc.get_vega_version()}-vl-{version}.js"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        pass
    bundle = vlc.javascript_bundle(vl_version=version)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(bundle, encoding="utf-8")
        tmp.replace(path)  # whole or absent: two reports at once never read half a bundle
    except OSError:
        pass
    return bundle


def _json_in_script(value: Any) -> str:
    """JSON that cannot end the <script> element it sits in (a district named '</script>' stays text):
    inside a JSON string `<\\/` is `</`."""
    return json.dumps(value, ensure_ascii=False).replace("</", "<\\/").replace("<!--", "<\\u0021--")


def _code_in_script(code: str) -> str:
    """The bundle, with any `</script` (none in today's) written as the equivalent `<\\/script`."""
    return re.sub(r"</(script)", r"<\\/\1", code, flags=re.IGNORECASE)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _attr(value: Any) -> str:
    return "" if value is None else html.escape(str(value), quote=True)


def _table(s: Section) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in s.columns)
    body = []
    for row in s.rows:
        attrs = " ".join(f'data-{k.replace("_", "-")}="{_attr(row[k])}"' for k, _ in s.columns)
        cells = "".join(f"<td>{html.escape(_cell(row[k]))}</td>" for k, _ in s.columns)
        body.append(f"<tr {attrs}>{cells}</tr>")
    table = (f'<table class="figures" data-figures="{s.key}"><thead><tr>{head}</tr></thead>'
             f'<tbody>{"".join(body)}</tbody></table>')
    return table if len(s.rows) <= 12 else f"<details><summary>the figures ({len(s.rows):,} rows)</summary>{table}</details>"


def _section(s: Section) -> str:
    parts = [f'<section id="{s.key}"><h2>{html.escape(s.title)}</h2>']
    if s.caption:
        parts.append(f'<p class="caption">{html.escape(s.caption)}</p>')
    if s.spec is not None:
        parts.append(f'<div class="chart" id="chart-{s.key}"></div>')
    if s.empty:
        parts.append(f'<p class="empty" data-empty="{s.key}">{html.escape(s.empty)}</p>')
    if s.rows:
        parts.append(_table(s))
    parts.append("</section>")
    return "\n".join(parts)


def render(title: str, meta: str, sections: list[Section]) -> str:
    specs = {f"chart-{s.key}": s.spec for s in sections if s.spec is not None}
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>",
        f"<script>{_code_in_script(vega_bundle())}</script></head>",
        f'<body data-charts="{len(specs)}"><h1>{html.escape(title)}</h1><p class="meta">{html.escape(meta)}</p>',
        *(_section(s) for s in sections),
        f'<script type="application/json" id="report-specs">{_json_in_script(specs)}</script>',
        f"<script>{PAGE_JS}</script>", "</body></html>", ""])
