"""A small hostile HTTP server for fetch tests: paths that trickle their headers or body a byte at a time,
forever (until the client goes away or the server stops), next to ordinary pages and a robots.txt.

    /trickle-body/…     headers at once (Content-Length 1,000,000), then one body byte per `interval`
    /trickle-headers/…  a status line, then one header byte per `interval`
    /robots.txt         `robots` if given (the string "TRICKLE": trickled like a body), else 404
    anything else       200, a list page of one item (tests/test_config.py's MINIMAL reads it) titled by its path
"""

from __future__ import annotations

import socketserver
import threading


class _Handler(socketserver.StreamRequestHandler):
    server: HostileServer

    def handle(self) -> None:
        line = self.rfile.readline(65536).decode("latin-1")
        while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
            pass  # request headers: not needed
        parts = line.split()
        path = parts[1] if len(parts) > 1 else "/"
        with self.server.lock:
            self.server.requested.append(path)
        try:
            if path.startswith("/trickle-body/") or (path == "/robots.txt" and self.server.robots == "TRICKLE"):
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 1000000\r\n\r\n")
                self._trickle()
            elif path.startswith("/trickle-headers/"):
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                self._trickle()
            elif path == "/robots.txt" and self.server.robots is None:
                self._send(404, b"no robots.txt here")
            elif path == "/robots.txt":
                self._send(200, self.server.robots.encode(), "text/plain")
            else:
                self._send(200, f'<html><body><ul class="list"><li data-id="{abs(hash(path))}">'
                                f'<a class="title">{path}</a><span class="price">1</span></li></ul></body></html>'.encode())
        except OSError:
            pass  # the client shut the connection down: what a trickle is waiting for

    def _send(self, status: int, body: bytes, kind: str = "text/html") -> None:
        self.wfile.write(f"HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                         "Connection: close\r\n\r\n".encode() + body)

    def _trickle(self) -> None:
        self.wfile.flush()
        while not self.server.stopping.wait(self.server.interval):
            self.connection.sendall(b"x")


class HostileServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, robots: str | None = None, interval: float = 0.2) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.robots, self.interval = robots, interval
        self.lock = threading.Lock()
        self.requested: list[str] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def domains(self) -> tuple[str, ...]:
        return (f"127.0.0.1:{self.server_address[1]}",)

    def paths(self) -> list[str]:
        with self.lock:
            return list(self.requested)

    def __enter__(self) -> HostileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()

