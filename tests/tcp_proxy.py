"""A small TCP proxy for fault injection (no netem or toxiproxy on the CI machine):
forwards a local port to a server and can reset every connection, black-hole traffic
(accept and read, forward nothing) or delay it."""

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
        self.refuse = False  # close new connections at once: the server looks down
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
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
            with self._lock:
                self._pairs.append((client, server))
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if self.blackhole:
                    continue
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


def _abort(sock: socket.socket) -> None:
    # shutdown() wakes a thread blocked in recv() on it (close() alone would not, and the
    # connection would live on); linger 0 makes the close a reset rather than a FIN.
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
