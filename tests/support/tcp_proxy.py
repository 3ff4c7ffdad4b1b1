"""A small TCP proxy for fault injection (no netem or toxiproxy on the CI machine):
forwards a local port to a server and can reset every connection, delay traffic, or
black-hole it in two ways:

- ``blackhole``: accept and read, forward nothing — the bytes are gone (a connection that
  lives through it is corrupt afterwards; use it only with ``reset_all()`` after);
- ``hold``: what a real network partition does to TCP — nothing gets through, nothing is
  lost: the bytes wait (in the kernel's buffers) until the hold is lifted, then flow on,
  unless an endpoint gave up on the connection meanwhile (heartbeat, timeout). New
  connections are accepted and held too.

``origin_port(server_side_port)`` tells which client connection a server sees (e.g.
``pg_stat_activity.client_port``) came from, so a test can find the process behind it."""

from __future__ import annotations

import socket
import struct
import threading
import time
from urllib.parse import urlsplit, urlunsplit


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.delay_s = 0.0
        self.blackhole = False
        self.hold = False  # a partition: forward nothing, lose nothing, until lifted
        self.refuse = False  # close new connections at once: the server looks down
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._origins: dict[int, int] = {}  # our port towards the server -> the client's port
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="tcp-proxy").start()

    @classmethod
    def for_url(cls, url: str) -> tuple["TcpProxy", str]:
        """A proxy in front of the server of ``url`` and the same URL pointing at the proxy."""
        parts = urlsplit(url)
        default_port = 5432 if parts.scheme.startswith("postgres") else 5672
        proxy = cls(parts.hostname or "127.0.0.1", parts.port or default_port)
        auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return proxy, urlunsplit(parts._replace(netloc=f"{auth}127.0.0.1:{proxy.port}"))

    def reset_all(self) -> int:
        """Abort every open connection; returns how many."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, server in pairs:
            for sock in (client, server):
                _abort(sock)
        return len(pairs)

    def heal(self) -> None:
        """Back to a plain pipe: no delay, no black hole, no hold, new connections accepted."""
        self.delay_s, self.blackhole, self.hold, self.refuse = 0.0, False, False, False

    def origin_port(self, server_side_port: int) -> int | None:
        """The client's own port of the connection the server sees coming from ``server_side_port``."""
        with self._lock:
            return self._origins.get(server_side_port)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.reset_all()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refuse:
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            pair = (client, server)
            with self._lock:
                self._pairs.append(pair)
                try:
                    self._origins[server.getsockname()[1]] = client.getpeername()[1]
                except OSError:
                    pass
            for source, sink in (pair, (server, client)):
                threading.Thread(target=self._pump, args=(source, sink, pair), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, pair: tuple[socket.socket, socket.socket]) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if self.blackhole:
                    continue
                while self.hold and not self._closed:
                    time.sleep(0.02)  # we stop reading: the rest waits in the kernel's buffers
                if self.delay_s:
                    time.sleep(self.delay_s)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self._lock:  # a long run opens thousands of connections: forget the dead ones
                if pair in self._pairs:
                    self._pairs.remove(pair)


def _abort(sock: socket.socket) -> None:
    # shutdown() wakes a thread blocked in recv() on it (close() alone would not, and the
    # connection would live on); linger 0 makes the close a reset rather than a FIN.
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
