"""HTTPS in front of the sandbox, for measuring what TLS costs a client as it does on AWS.

The sandbox speaks plain HTTP, so a client never builds what a real HTTPS endpoint makes it build: a TLS context that
loads the whole CA bundle on its first connection, and a handshake per new connection.  ``TlsFront`` listens on
127.0.0.1 with a certificate of a throwaway CA, unwraps TLS and forwards the bytes to the sandbox.  ``ca_bundle`` is
certifi's bundle (what botocore verifies AWS against) with that CA appended, so clients verify the certificate and
load as many CA certificates as they would against AWS.
"""

import datetime
import ipaddress
import pathlib
import socket
import ssl
import threading

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _certificate(subject, issuer, public_key, signing_key, ca):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


class TlsFront:
    """``with TlsFront(upstream_port, directory) as front:`` serves ``front.endpoint``; verify against ``front.ca_bundle``."""

    def __init__(self, upstream_port, directory):
        self._upstream = ("127.0.0.1", upstream_port)
        directory = pathlib.Path(directory)
        ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        ca = _certificate("cms-patching bench CA", "cms-patching bench CA", ca_key.public_key(), ca_key, True)
        cert = _certificate("127.0.0.1", "cms-patching bench CA", key.public_key(), ca_key, False)
        self.ca_bundle = str(directory / "bundle.pem")
        pathlib.Path(self.ca_bundle).write_bytes(pathlib.Path(certifi.where()).read_bytes() + ca.public_bytes(serialization.Encoding.PEM))
        (directory / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(directory / "server.pem", directory / "server.key")
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = "https://127.0.0.1:%d" % self._listener.getsockname()[1]

    def __enter__(self):
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._listener.close()

    def _accept(self):
        while True:
            try:
                raw, _address = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw):
        try:
            client = self._context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        upstream = socket.create_connection(self._upstream)
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
        _pump(client, upstream)


def _pump(source, target):
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
