"""Build the demo portal as a static tree on disk and serve it with nginx (or a Python fallback).

Why: the project's bundled demo server is Python (ThreadingHTTPServer); it would be the bottleneck and
would share the 2 cores unevenly with the crawler. A static tree behind nginx (sendfile, keep-alive) is a
fast, neutral target for every contender, and its own ceiling is measured separately (wrk).

Layout mirrors the URLs the crawler requests: /robots.txt, /bj/ershoufang/index.html,
/bj/ershoufang/pg2/index.html, /bj/ershoufang/{slug}/[pg{n}/]index.html, /bj/ershoufang/{id}.html.

    python bench/site.py --listings 20000 --encoding gbk [--serve]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from etl.demo.site import ROBOTS, DemoSite, SiteOptions, render_detail, render_list

CACHE = Path(os.environ.get("BENCH_SITE_CACHE", "/tmp/etl-bench-sites"))
CAP = 3000  # config/demo.toml [crawl] cap


@dataclass
class SiteTree:
    """A built site: its root directory and the exact URL paths a complete crawl fetches."""

    root: Path
    listings: int
    encoding: str
    list_paths: list[str]  # list pages the crawler fetches (facet roots + paginated leaves)
    leaf_lists: list[tuple[str, int]]  # (path, listings on that page) for the leaf list pages
    detail_paths: list[str]

    @property
    def all_paths(self) -> list[str]:
        return self.list_paths + self.detail_paths


def _pages(count: int, o: SiteOptions) -> int:
    return min(o.max_pages, -(-count // o.page_size))


def crawl_plan(site: DemoSite, city: str) -> tuple[list[str], list[tuple[str, int]], list[str]]:
    """The URL paths the config's facet logic visits: city → district → sub-district while total > cap."""
    o, m = site.options, site.model(city)
    lists: list[str] = []
    leaves: list[tuple[str, int]] = []

    def leaf(base: str, count: int) -> None:
        for n in range(1, max(1, _pages(count, o)) + 1):
            path = base if n == 1 else f"{base}pg{n}/"
            lists.append(path)
            leaves.append((path, max(0, min(o.page_size, count - (n - 1) * o.page_size))))

    city_base = f"/{city}/ershoufang/"
    if len(m.listings) <= CAP:
        leaf(city_base, len(m.listings))
    else:
        lists.append(city_base)
        for d, (_, dslug) in enumerate(m.districts):
            base = f"/{city}/ershoufang/{dslug}/"
            if len(m.by_district[d]) <= CAP:
                leaf(base, len(m.by_district[d]))
            else:
                lists.append(base)
                for s in m.district_subs[d]:
                    leaf(f"/{city}/ershoufang/{m.subs[s][1]}/", len(m.by_sub[s]))
    details = [f"/{city}/ershoufang/{li.id}.html" for li in m.listings]
    return lists, leaves, details


def build(listings: int, encoding: str = "gbk", city: str = "bj", seed: int = 0, force: bool = False,
          day: int = 0) -> SiteTree:
    """Render every list page (all pages of every city/district/sub-district list) and every detail page.
    Cached under $BENCH_SITE_CACHE by (listings, encoding, seed, day): a second run reuses the tree.
    `day` N is the demo site N days later (etl/demo/days.py): removed listings have no detail file (404)."""
    options = SiteOptions(listings=listings, encoding=encoding, seed=seed, day=day)
    site = DemoSite(options)
    root = CACHE / (f"{city}-{listings}-{encoding}-{seed}" + (f"-day{day}" if day else ""))
    lists, leaves, details = crawl_plan(site, city)
    tree = SiteTree(root, listings, encoding, lists, leaves, details)
    if (root / ".complete").exists() and not force:
        return tree
    if root.exists():
        shutil.rmtree(root)
    m = site.model(city)
    base = root / city / "ershoufang"
    base.mkdir(parents=True)
    (root / "robots.txt").write_text(ROBOTS)

    def write_list(path: Path, kind: str, idx: int, count: int) -> None:
        for n in range(1, max(1, _pages(count, options)) + 1):
            d = path if n == 1 else path / f"pg{n}"
            d.mkdir(parents=True, exist_ok=True)
            (d / "index.html").write_bytes(render_list(m, options, kind, idx, n))

    write_list(base, "c", -1, len(m.listings))
    for d, (_, slug) in enumerate(m.districts):
        write_list(base / slug, "d", d, len(m.by_district[d]))
    for s, (_, slug, _d) in enumerate(m.subs):
        write_list(base / slug, "s", s, len(m.by_sub[s]))
    for li in m.listings:
        (base / f"{li.id}.html").write_bytes(render_detail(m, li, encoding))
    (root / ".complete").write_text(json.dumps({"listings": listings, "encoding": encoding}))
    return tree


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NGINX_CONF = """\
worker_processes {workers};
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
{user}
events {{ worker_connections 4096; multi_accept on; }}
http {{
    types {{ text/html html; text/plain txt; }}
    default_type text/html;
    {charset}
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {root};
        index index.html;
        location / {{ try_files $uri $uri/ =404; }}
    }}
}}
"""


class StaticServer:
    """nginx in the foreground (`daemon off`) on a free port; a Python static server if nginx is missing.
    GBK pages are served as plain `text/html` (the charset is only in <meta>), UTF-8 ones with charset."""

    def __init__(self, tree: SiteTree, workers: int | str = 1) -> None:
        self.tree, self.workers = tree, workers
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.kind = "nginx" if shutil.which("nginx") else "python"
        self.prefix = Path(tempfile.mkdtemp(prefix="etl-bench-nginx-"))

    def start(self) -> str:
        if self.kind == "nginx":
            conf = self.prefix / "nginx.conf"
            utf8 = self.tree.encoding.lower().replace("_", "-") in ("utf-8", "utf8")
            conf.write_text(NGINX_CONF.format(
                workers=self.workers, prefix=self.prefix, port=self.port, root=self.tree.root,
                user="user root;" if os.geteuid() == 0 else "", charset="charset utf-8;" if utf8 else ""))
            cmd = [shutil.which("nginx") or "nginx", "-c", str(conf), "-p", str(self.prefix), "-g", "daemon off;"]
        else:
            cmd = [sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1",
                   "--directory", str(self.tree.root)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.base_url + "/robots.txt", timeout=1) as r:
                    if r.status == 200:
                        return self.base_url
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.kind} exited: {self.proc.stderr.read().decode()[:500]}") from None
                time.sleep(0.1)
        raise RuntimeError(f"{self.kind} did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT if self.kind == "nginx" else signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> StaticServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listings", type=int, default=20000)
    ap.add_argument("--encoding", default="gbk", choices=["gbk", "utf-8"])
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--serve", action="store_true", help="serve it with nginx until Ctrl-C")
    args = ap.parse_args()
    t0 = time.perf_counter()
    tree = build(args.listings, args.encoding, force=args.force)
    print(f"{tree.root}: {len(tree.list_paths)} list + {len(tree.detail_paths)} detail pages "
          f"({time.perf_counter() - t0:.1f}s)")
    if args.serve:
        with StaticServer(tree) as srv:
            print(f"serving {srv.base_url}/bj/ershoufang/ with {srv.kind}; Ctrl-C to stop", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass


if __name__ == "__main__":
    main()
