"""TLS on loopback for the tests: a certificate for 127.0.0.1 signed by itself, and a TLS front
that forwards each connection to a plain TCP server (counting the handshakes it accepted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by itself (no CA here trusts it), and its key."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "openclaw test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


class TlsFront:
    """TLS on 127.0.0.1 in front of a plain TCP server: each connection forwarded both ways."""

    def __init__(self, target: tuple[str, int], cert: Path, key: Path) -> None:
        import socket
        import ssl
        import threading

        self.target = target
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.handshakes = 0  # TLS connections accepted
        self.refused = 0  # connections whose client refused the certificate (or the handshake failed)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            try:
                client = self.context.wrap_socket(raw, server_side=True)
            except OSError:
                raw.close()  # a client that refused the certificate
                self.refused += 1
                continue
            self.handshakes += 1
            upstream = socket.create_connection(self.target)
            ended = [0, threading.Lock()]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b, ended), daemon=True).start()

    @staticmethod
    def _pipe(src: Any, dst: Any, ended: list[Any]) -> None:
        """One direction; at its end the other side is told (a half-close, as without a front: a
        server reading the next request sees the end, not a reset), and the last direction to end
        closes both sockets."""
        import socket

        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        with ended[1]:
            ended[0] += 1
            last = ended[0] == 2
        if last:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()
