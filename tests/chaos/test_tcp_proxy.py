"""The fault proxy itself: a hold (a partition) delays bytes without losing any, a reset
breaks every connection, and a server-side port leads back to the client's."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
def echo_server():
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=conn: _echo(c), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def _echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def test_a_hold_delivers_every_byte_once_lifted(echo_server):
    # Given a connection through the proxy
    proxy = TcpProxy("127.0.0.1", echo_server)
    client = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    try:
        # When the proxy holds traffic while the client sends
        proxy.hold = True
        payload = b"".join(b"%06d" % n for n in range(20_000))
        client.sendall(payload)
        client.settimeout(0.5)
        with pytest.raises(socket.timeout):
            client.recv(1)
        # Then nothing came back during the hold, and everything comes back after it, intact
        proxy.heal()
        client.settimeout(5)
        echoed = b""
        while len(echoed) < len(payload):
            echoed += client.recv(65536)
        assert echoed == payload
    finally:
        client.close()
        proxy.close()


def test_a_reset_breaks_the_connection_and_the_origin_port_names_the_client(echo_server):
    proxy = TcpProxy("127.0.0.1", echo_server)
    client = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    try:
        client.sendall(b"ping")
        assert client.recv(4) == b"ping"
        [(_, server_side)] = proxy._pairs  # noqa: SLF001 - the port the server sees
        assert proxy.origin_port(server_side.getsockname()[1]) == client.getsockname()[1]
        assert proxy.reset_all() == 1
        try:
            data = client.recv(1)
        except ConnectionResetError:
            data = b""
        assert data == b"", "the connection should be gone"
    finally:
        client.close()
        proxy.close()
