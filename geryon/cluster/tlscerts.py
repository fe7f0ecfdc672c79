"""Making a cluster CA and host certificates for `geryon init --tls` (needs `cryptography`).

The CA is made once (on the first machine) and reused when its key is present, so each
machine's `geryon init --tls` (with the CA copied there) signs its own host certificate.
A host certificate names the host (its name, `localhost`, its interface addresses and any
extra names given) so clients can check the name they dialled. Keys are ECDSA P-256,
written mode 0600. The standard library can use certificates but cannot make them, hence
`cryptography` (the `tls` extra), imported only here. Not here: using certificates
(`registry.tls`), where the files live (the CLI decides).
"""
from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geryon.errors import GeryonError
from registry.tls import CA_CERT, CA_KEY, HOST_CERT, HOST_KEY

log = logging.getLogger(__name__)

DEFAULT_CA_DAYS = 3650
"""Days a new cluster CA is valid."""

DEFAULT_HOST_DAYS = 825
"""Days a new host certificate is valid."""


@dataclass(frozen=True)
class MadeCerts:
    """What `make_host_cert` wrote."""

    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path
    ca_created: bool
    names: tuple[str, ...]


def _crypto() -> Any:
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as exc:
        raise GeryonError("making certificates needs the `cryptography` package "
                          "(pip install 'geryon[tls]'), or give your own --tls-cert/--tls-key") from exc
    return x509, hashes, serialization, ec, NameOID, ExtendedKeyUsageOID


def host_names(extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The names and addresses a certificate for this host should carry (stable order)."""
    names = [socket.gethostname(), socket.getfqdn(), "localhost", "127.0.0.1", "::1"]
    try:
        import ifaddr                              # zeroconf's dependency, already installed

        for adapter in ifaddr.get_adapters():
            for ip in adapter.ips:
                addr = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
                if "%" not in addr:
                    names.append(addr)
    except (ImportError, OSError):
        pass
    names += list(extra)
    return tuple(dict.fromkeys(n for n in names if n))


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _san(x509: Any, names: Sequence[str]) -> Any:
    entries = []
    for n in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            entries.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(entries)


def make_host_cert(tls_dir: Path, *, ca_cert: Path | None = None, ca_key: Path | None = None,
                   extra_names: Sequence[str] = (), now: datetime.datetime | None = None) -> MadeCerts:
    """Write this host's certificate and key into `tls_dir`, signed by the cluster CA.

    The CA (`registry.tls.CA_CERT`/`CA_KEY` in `tls_dir` unless named) is made first if absent.

    Raises:
        GeryonError: `cryptography` is missing, or a file cannot be read or written.
    """
    x509, hashes, serialization, ec, NameOID, EKU = _crypto()
    now = now or datetime.datetime.now(datetime.timezone.utc)
    ca_cert = ca_cert or tls_dir / CA_CERT
    ca_key = ca_key or tls_dir / CA_KEY
    pem = serialization.Encoding.PEM
    plain = serialization.NoEncryption()
    try:
        created = not (ca_cert.exists() and ca_key.exists())
        if created:
            key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Geryon cluster CA"),
                              x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Geryon")])
            cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                    .public_key(key.public_key()).serial_number(x509.random_serial_number())
                    .not_valid_before(now - datetime.timedelta(minutes=5))
                    .not_valid_after(now + datetime.timedelta(days=DEFAULT_CA_DAYS))
                    .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                    .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                 content_commitment=False, key_encipherment=False,
                                                 data_encipherment=False, key_agreement=False,
                                                 encipher_only=False, decipher_only=False), critical=True)
                    .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                    .sign(key, hashes.SHA256()))
            _write_private(ca_key, key.private_bytes(pem, serialization.PrivateFormat.PKCS8, plain))
            _write_public(ca_cert, cert.public_bytes(pem))
        ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
        signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
        names = host_names(extra_names)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
                .issuer_name(ca.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=DEFAULT_HOST_DAYS))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(_san(x509, names), critical=False)
                .add_extension(x509.ExtendedKeyUsage([EKU.SERVER_AUTH, EKU.CLIENT_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                               critical=False)
                .sign(signer, hashes.SHA256()))
        cert_path, key_path = tls_dir / HOST_CERT, tls_dir / HOST_KEY
        _write_private(key_path, key.private_bytes(pem, serialization.PrivateFormat.PKCS8, plain))
        _write_public(cert_path, cert.public_bytes(pem))
    except OSError as exc:
        raise GeryonError(f"{exc.filename or tls_dir}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise GeryonError(f"{ca_cert} / {ca_key}: not a certificate and key: {exc}") from exc
    log.info("wrote %s for %s", cert_path, ", ".join(names))
    return MadeCerts(ca_cert, ca_key, cert_path, key_path, created, names)
