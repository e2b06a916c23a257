"""A local certificate authority and server certificate for the emulators.

Generated once per data directory under DIR/tls and reused, so a CA bundle handed to clients
stays valid across restarts.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _covers(cert_pem: Path, names: list[str]) -> bool:
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    have = {str(n) for n in san.get_values_for_type(x509.DNSName)} | {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return all(n in have for n in names)


def ensure_certificates(data_dir: Path, names: list[str] | None = None
                        ) -> tuple[Path, Path, Path]:
    """Return (ca.pem, server.pem, server.key) in DIR/tls, creating them if missing.

    ``names``: extra host names or addresses the server certificate must cover (e.g. the
    service name in docker compose); a certificate lacking one is made again.
    """
    extra = [n for n in (names or []) if n not in ("localhost", "127.0.0.1", "::1")]
    tls = data_dir / "tls"
    ca_pem, srv_pem, srv_key = tls / "ca.pem", tls / "server.pem", tls / "server.key"
    if ca_pem.exists() and srv_pem.exists() and srv_key.exists() and _covers(srv_pem, extra):
        return ca_pem, srv_pem, srv_key
    tls.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    # EC keys: generation is milliseconds, which keeps first start fast.
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bcdv emulators local CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    for name in extra:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    san = x509.SubjectAlternativeName(alt)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=825))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(tls / "ca.key", ca_key)
    _write_key(srv_key, key)
    srv_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    # Written last: its presence marks a complete set.
    ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return ca_pem, srv_pem, srv_key
