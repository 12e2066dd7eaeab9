"""Throwaway certificates for local clusters and test webhooks.

The API server only calls webhooks over verified TLS, and the local control plane needs a
CA its kubeconfig can trust; both are served by a one-day CA made on the spot.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=1)
CLOCK_SKEW = datetime.timedelta(minutes=5)


def new_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def public_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA that issues serving certificates."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey

    @classmethod
    def create(cls, common_name: str) -> CertificateAuthority:
        key = new_private_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        certificate = (
            _builder(name, name, key)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(certificate, key)

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue_serving_certificate(
        self, common_name: str, hosts: Iterable[str]
    ) -> tuple[bytes, rsa.RSAPrivateKey]:
        """A server certificate (PEM) and its key, valid for ``hosts`` (DNS names or IPs)."""
        names = x509.SubjectAlternativeName([_general_name(host) for host in hosts])
        return self._issue(common_name, ExtendedKeyUsageOID.SERVER_AUTH, names)

    def issue_client_certificate(self, common_name: str) -> tuple[bytes, rsa.RSAPrivateKey]:
        """A client certificate (PEM) and its key, authenticating as ``common_name``."""
        return self._issue(common_name, ExtendedKeyUsageOID.CLIENT_AUTH)

    def _issue(
        self,
        common_name: str,
        usage: x509.ObjectIdentifier,
        names: x509.SubjectAlternativeName | None = None,
    ) -> tuple[bytes, rsa.RSAPrivateKey]:
        key = new_private_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        builder = _builder(subject, self.certificate.subject, key).add_extension(
            x509.ExtendedKeyUsage([usage]), critical=False
        )
        if names is not None:
            builder = builder.add_extension(names, critical=False)
        certificate = builder.sign(self.key, hashes.SHA256())
        return certificate.public_bytes(serialization.Encoding.PEM), key


def write_key_pair(certificate_pem: bytes, key: rsa.RSAPrivateKey, cert_path: Path, key_path: Path) -> None:
    """Write a certificate and its private key (the key readable by the owner only)."""
    cert_path.write_bytes(certificate_pem)
    write_private_key(key, key_path)


def write_private_key(key: rsa.RSAPrivateKey, path: Path) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(private_key_pem(key))


def _builder(subject: x509.Name, issuer: x509.Name, key: rsa.RSAPrivateKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + VALIDITY)
    )


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)
