"""The import structure the seams promise, kept by a test instead of a promise: no import cycles in etl/,
and the fetch stage runs without parse/ or SQLAlchemy (its process stays small and its GIL fetches)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ETL = Path(__file__).resolve().parent.parent / "etl"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ETL.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ETL.rglob("*.py")}


def _imports(path: Path, name: str, known: set[str], module_level_only: bool) -> set[str]:
    """Modules `name` imports (not under `if TYPE_CHECKING`): every import statement, or only those
    that run when it is imported."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    if module_level_only:
        inside = {id(n) for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                  for n in ast.walk(node)}
        skip |= inside
    found: set[str] = set()
    for stmt in ast.walk(tree):
        if id(stmt) in skip:
            continue
        if isinstance(stmt, ast.Import):
            found |= {a.name for a in stmt.names}
        elif isinstance(stmt, ast.ImportFrom):
            base = stmt.module or ""
            if stmt.level:
                parts = package.split(".")[: len(package.split(".")) - stmt.level + 1]
                base = ".".join(parts + ([base] if base else []))
            subs = {f"{base}.{a.name}" for a in stmt.names if f"{base}.{a.name}" in known}
            found |= subs if subs and len(subs) == len(stmt.names) else subs | {base}
    return {m for m in found if m != name}


def _printed(code: str, env: dict[str, str] | None = None) -> str:
    """What `code` prints in a fresh interpreter: a process imports only what its own code pulls in."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return out.stdout.strip()


def _graph(module_level_only: bool = False) -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: {m for m in _imports(path, name, known, module_level_only) if m in known}
            for name, path in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_in_etl() -> None:
    """Imports inside functions count too: a lazy import that closes a loop is still a loop."""
    assert _cycles(_graph()) == []


def test_cycle_detector_finds_a_planted_cycle() -> None:
    graph = {"etl.a": {"etl.b"}, "etl.b": {"etl.c"}, "etl.c": {"etl.a"}, "etl.d": {"etl.a"}}
    assert _cycles(graph) == [["etl.a", "etl.b", "etl.c"]]


def _closure(graph: dict[str, set[str]], start: str) -> set[str]:
    """What importing `start` runs: its imports, theirs, and every package __init__ on the way."""
    seen, todo = set(), [start]
    while todo:
        mod = todo.pop()
        parents = {".".join(mod.split(".")[:i]) for i in range(1, mod.count(".") + 1)}
        for m in graph.get(mod, set()) | (parents & set(graph)):
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


def test_fetch_stage_imports_neither_parse_nor_sqlalchemy_statically() -> None:
    reached = _closure(_graph(module_level_only=True), "etl.fetch")
    assert not {m for m in reached if m.startswith("etl.parse")}
    for name in reached | {"etl.fetch"}:
        path = _modules()[name]
        assert "sqlalchemy" not in {m.split(".")[0] for m in _imports(path, name, set(), True)}, name


def test_fetch_stage_imports_neither_parse_nor_sqlalchemy_at_run_time() -> None:
    """What the fetch process really loads (its entry point and the settings object it receives)."""
    code = ("import sys, pickle, etl.fetch\n"
            "from etl.config.model import FetchSettings\n"
            "pickle.loads(pickle.dumps(FetchSettings()))\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('etl.parse', 'sqlalchemy')))\n"
            "print(','.join(bad))\n")
    assert _printed(code) == ""


def test_a_crawls_parse_process_imports_neither_sqlalchemy_nor_bs4(tmp_path: Path) -> None:
    """A parse process of an HTML crawl on the default engine gets its config pickled, as the coordinator
    sends it, and parses a page: SQLAlchemy (a column name of SQLAlchemy's own str type in the config, the
    incremental hashes next to the database code) and bs4 were 20+ MB in every such process."""
    import pickle

    from etl import config

    cfg = config.load(ETL.parent / "config" / "demo.toml", ["source.base_url=http://demo.test"],
                      "postgresql://nobody@127.0.0.1:1/none")
    (tmp_path / "cfg.pkl").write_bytes(pickle.dumps(cfg))
    code = (
        "import pickle, sys\n"
        f"cfg = pickle.loads(open({str(tmp_path / 'cfg.pkl')!r}, 'rb').read())\n"
        "from etl.items import Page, Request\n"
        "from etl.parse import worker\n"
        "worker.init_worker(cfg, ('demo.test',))\n"
        "page = Page(Request('http://demo.test/bj/ershoufang/', 'city', {}), 'http://demo.test/bj/ershoufang/', 200,\n"
        "            {'content-type': 'text/html; charset=utf-8'}, b'<html><body><p>x</p></body></html>')\n"
        "assert worker.process(page).error is None\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'bs4', 'psycopg2'}))\n")
    assert _printed(code) == "[]"


def test_the_curl_fetch_process_goes_without_requests_on_plain_urls() -> None:
    """requests is a dozen MB of the fetch process: with [run] http = "curl", a plain URL and no proxy or
    .netrc settings in the environment, nothing of it is needed, so nothing of it is imported."""
    code = (
        "import os, sys, threading\n"
        "from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer\n"
        "class H(BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        body = b'<html>ok</html>'\n"
        "        self.send_response(200); self.send_header('Content-Type', 'text/html')\n"
        "        self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)\n"
        "    def log_message(self, *a): pass\n"
        "srv = ThreadingHTTPServer(('127.0.0.1', 0), H)\n"
        "threading.Thread(target=srv.serve_forever, daemon=True).start()\n"
        "from etl.config.model import FetchSettings\n"
        "from etl.fetch.fetcher import Fetcher\n"
        "from etl.items import Page, Request\n"
        "f = Fetcher(FetchSettings(), (f'127.0.0.1:{srv.server_port}',), pool_size=2, http='curl')\n"
        "page = f.fetch(Request(f'http://127.0.0.1:{srv.server_port}/a', 'list', {}))\n"
        "assert isinstance(page, Page) and page.status == 200, page\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'requests'))\n")
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy",
                                                                     "no_proxy", "netrc")}
    assert _printed(code, env) == "[]"
