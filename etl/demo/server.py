"""Local HTTP server for the demo site, run in its own process so it never shares the crawler's GIL.

``extra_apps`` are "module:function" names of ``app(path) -> (status, headers, body) | None``
callables, imported inside the server process and tried before the listings site. Every 200 answer, the
extra apps' included, gets ETag / Last-Modified and conditional requests are answered 304
(etl/demo/conditional.py); a page without its own Last-Modified gets the served day's date.
"""

from __future__ import annotations

import importlib
import multiprocessing
import sys
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from etl.demo import conditional
from etl.demo.site import DemoSite, SiteOptions

App = Callable[[str], "tuple[int, dict[str, str], bytes] | None"]


def _load_app(name: str) -> App:
    module, _, func = name.partition(":")
    if not module or not func:
        raise ValueError(f"extra app must look like 'package.module:function', got {name!r}")
    return getattr(importlib.import_module(module), func)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True


def make_server(options: SiteOptions, host: str, port: int, extra_apps: tuple[str, ...] = ()) -> _Server:
    """Build (not start) a threaded HTTP/1.1 server answering GET/HEAD from the site and extra apps."""
    site = DemoSite(options)
    apps: list[App] = [_load_app(a) for a in extra_apps] + [site.render]
    day_modified = conditional.http_date(site.date)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
        server_version = "etl-demo/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by design
            pass

        def _respond(self, with_body: bool) -> None:
            try:
                result = None
                for app in apps:
                    result = app(self.path)
                    if result is not None:
                        break
                status, headers, body = result if result is not None else (404, {}, b"not found")
                status, headers, body = conditional.apply(self.command, self.headers, (status, headers, body),
                                                          day_modified)
            except Exception as exc:  # keep serving; report as a server error
                status, headers, body = 500, {"Content-Type": "text/plain"}, f"error: {exc!r}".encode()
            self.send_response(status)
            for key, value in headers.items():
                if key.lower() != "content-length":
                    self.send_header(key, value)
            if status != 304:  # a 304 has no body, and no length of one
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if with_body and status != 304:
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            self._respond(True)

        def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
            self._respond(False)

    return _Server((host, port), Handler)


def _child(options: SiteOptions, host: str, port: int, extra_apps: tuple[str, ...], conn: Any) -> None:
    """Server process entry point: report the bound port (or the error) then serve forever."""
    try:
        server = make_server(options, host, port, extra_apps)
    except BaseException as exc:
        conn.send(("error", repr(exc)))
        conn.close()
        return
    conn.send(("ok", server.server_address[1]))
    conn.close()
    _leave_with_parent(server)
    _serve(server)


def _leave_with_parent(server) -> None:
    """A run killed with -9 cannot stop its demo server: the server stops itself once its parent is gone."""
    import threading
    import time

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        while parent.is_alive():
            time.sleep(1.0)
        server.shutdown()

    threading.Thread(target=watch, name="demo-parent-watch", daemon=True).start()


def _serve(server) -> None:
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


class DemoServer:
    """Serves a DemoSite on 127.0.0.1 with a random free port, in a separate PROCESS so it never competes
    with the crawler for the GIL."""

    def __init__(self, options: SiteOptions = SiteOptions(), host: str = "127.0.0.1", port: int = 0,  # noqa: B008
                 extra_apps: tuple[str, ...] = ()) -> None:
        self.options, self.host, self.port, self.extra_apps = options, host, port, tuple(extra_apps)
        self.base_url = ""
        self._proc: multiprocessing.process.BaseProcess | None = None

    def start(self, timeout: float = 30.0) -> str:
        """Spawn the server process and return its base URL once it accepts connections."""
        if self._proc is not None:
            return self.base_url
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(self.options, self.host, self.port, self.extra_apps, child),
                           name="etl-demo-server", daemon=True)
        proc.start()
        child.close()
        try:
            if not parent.poll(timeout):
                raise TimeoutError(f"demo server did not start within {timeout}s")
            kind, value = parent.recv()
        except EOFError:
            proc.join(5)
            raise RuntimeError("demo server process exited during start-up (scripts using the spawn context "
                               "need an `if __name__ == '__main__':` guard)") from None
        except BaseException:
            proc.terminate()
            proc.join(5)
            raise
        finally:
            parent.close()
        if kind != "ok":
            proc.join(5)
            raise RuntimeError(f"demo server failed to start: {value}")
        self._proc, self.port = proc, int(value)
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        self.base_url = f"http://{host}:{self.port}"
        return self.base_url

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server process and wait for it (kill if it lingers)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout)

    def __enter__(self) -> DemoServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(options: SiteOptions, host: str, port: int, extra_apps: tuple[str, ...] = ()) -> None:
    """Foreground server for ``etl demo serve``; prints the URL and runs until Ctrl-C."""
    server = make_server(options, host, port, extra_apps)
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
    print(f"demo site serving on http://{shown}:{server.server_address[1]}/bj/ershoufang/ (Ctrl-C to stop)",
          file=sys.stdout, flush=True)
    _serve(server)
