"""TLS to RabbitMQ: an ``amqps://`` URL gives pika a verifying TLS context (system CAs, host
name checked), ``?ssl_options=`` in the URL names a private CA and the server name, and the
runtime's own connection options still apply. No TLS server is needed: only the parameters."""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import quote

from conveyor.workers.config import Settings
from conveyor.workers.runtime import amqp

# A throwaway self-signed CA certificate (public part only), to load as a private CA.
TEST_CA = """-----BEGIN CERTIFICATE-----
MIIBjjCCATOgAwIBAgIUGdlBZXUPdFgGWSpEc3pO1JzZkRcwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQQ29udmV5b3IgdGVzdCBDQTAgFw0yNjExMjUyMzM3MDZaGA8y
MTI2MTEwMTIzMzcwNlowGzEZMBcGA1UEAwwQQ29udmV5b3IgdGVzdCBDQTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABBFGtJB0EAFAhtWNvLCN6zJK0j7Y8AaxlBML
uzc/np4RwlUGuPrhNaAyd7vVApVzYahBF+IKnXuqhXWjWzuzwo+jUzBRMB0GA1Ud
DgQWBBRKGQLYcnU6umMQl/kOHEgGahK+mzAfBgNVHSMEGDAWgBRKGQLYcnU6umMQ
l/kOHEgGahK+mzAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQDS
QxdMddRvTOEq0pTTwFITQzv01YkBIhsE9fQgn5E9ZgIhANUKO/jAkd2aWCzT2/dr
T39KUJyBJpA7nDF0K4OvRJXb
-----END CERTIFICATE-----
"""


def parameters(url: str):
    return amqp.parameters(Settings(amqp_url=url, heartbeat_seconds=7, blocked_connection_timeout=9),
                           name="tls-test")


def test_amqps_uses_a_verifying_tls_context_on_the_tls_port() -> None:
    # Given an amqps:// URL without a port
    params = parameters("amqps://conveyor:secret@broker.example.com/%2F")

    # Then the connection is TLS on 5671, certificates and host name are checked
    context = params.ssl_options.context
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert (params.host, params.port) == ("broker.example.com", 5671)
    assert (params.heartbeat, params.blocked_connection_timeout) == (7, 9)
    assert params.client_properties == {"connection_name": "conveyor-tls-test"}


def test_amqp_stays_plain() -> None:
    params = parameters("amqp://conveyor:secret@broker.example.com/%2F")
    assert params.ssl_options is None and params.port == 5672


def test_ssl_options_in_the_url_load_a_private_ca_and_name_the_server(tmp_path: Path) -> None:
    # Given a private CA file and a broker reached by address, whose certificate names it otherwise
    ca = tmp_path / "ca.pem"
    ca.write_text(TEST_CA)
    options = quote(str({"ca_certs": str(ca), "server_hostname": "rabbitmq.internal"}))

    # When the URL carries them (and its own port)
    params = parameters(f"amqps://conveyor:secret@10.0.0.5:5673/%2F?ssl_options={options}")

    # Then only that CA is trusted, the name checked is the one given, the port is kept
    context = params.ssl_options.context
    assert [cert["subject"] for cert in context.get_ca_certs()] == [((("commonName", "Conveyor test CA"),),)]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert params.ssl_options.server_hostname == "rabbitmq.internal"
    assert (params.host, params.port) == ("10.0.0.5", 5673)
