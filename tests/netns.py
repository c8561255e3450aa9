"""Three worker "hosts" on one machine: Linux network namespaces on a bridge, each with its own address and
hostname, reaching PostgreSQL and the demo site over the bridge (needs root and `ip`).

    host side: bridge etlbr0 10.231.0.1 ── relay :5432 → 127.0.0.1:5432 (PostgreSQL listens on loopback)
                  │          └─ demo site on 10.231.0.1:<port>
       veth etlv1 │ etlv2 │ etlv3                        (ip link set etlvN down = host N's cable cut)
      ns etlw1 10.231.0.11 · etlw2 .12 · etlw3 .13       (hostname w1, w2, w3 via unshare --uts)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading

BRIDGE, PREFIX = "etlbr0", "10.231.0"
GATEWAY = f"{PREFIX}.1"


def unavailable() -> str | None:
    """Why namespaces cannot be used here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not shutil.which("ip") or not shutil.which("unshare"):
        return "the ip and unshare commands are missing (iproute2, util-linux)"
    probe = subprocess.run(["ip", "netns", "add", "etlprobe"], capture_output=True, text=True)
    if probe.returncode:
        return f"ip netns add failed: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", "etlprobe"], capture_output=True)
    return None


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


class Relay:
    """TCP relay: connections to (host, port) are carried to (to_host, to_port). Threads, one pair per
    connection; closing the relay closes every connection it carries (as a server going away would)."""

    def __init__(self, host: str, port: int, to_host: str, to_port: int) -> None:
        self.target = (to_host, to_port)
        self.server = socket.create_server((host, port), reuse_port=False)
        self.server.settimeout(0.5)
        self.open: set[socket.socket] = set()
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self.open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
                self.open.discard(s)

    def close(self) -> None:
        self.stopped.set()
        self.server.close()
        for s in list(self.open):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Hosts:
    def __init__(self, n: int = 3) -> None:
        self.n = n
        self.relay: Relay | None = None

    def name(self, i: int) -> str:
        return f"etlw{i}"

    def address(self, i: int) -> str:
        return f"{PREFIX}.{10 + i}"

    def __enter__(self) -> Hosts:
        self._teardown()
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")
        for i in range(1, self.n + 1):
            ns, veth = self.name(i), f"etlv{i}"
            _ip("netns", "add", ns)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", veth, "master", BRIDGE)
            _ip("link", "set", veth, "up")
            _ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "route", "add", "default", "via", GATEWAY)
        self.relay = Relay(GATEWAY, 5432, "127.0.0.1", 5432)
        return self

    def __exit__(self, *exc) -> None:
        if self.relay is not None:
            self.relay.close()
        self._teardown()

    def _teardown(self) -> None:
        for i in range(1, self.n + 1):
            _ip("netns", "del", self.name(i), check=False)
            _ip("link", "del", f"etlv{i}", check=False)
        _ip("link", "del", BRIDGE, check=False)

    def command(self, i: int, argv: list[str]) -> list[str]:
        """argv run inside host i, with its own hostname."""
        return ["ip", "netns", "exec", self.name(i), "unshare", "--uts", "sh", "-c",
                f'hostname w{i} && exec "$@"', "sh", *argv]

    def cut(self, i: int) -> None:
        _ip("link", "set", f"etlv{i}", "down")

    def restore(self, i: int) -> None:
        _ip("link", "set", f"etlv{i}", "up")
