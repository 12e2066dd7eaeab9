"""Serving certificates in a folder the way the kubelet mounts a Secret, and rotated the same way.

The kubelet writes each version of a Secret into a fresh timestamped folder and swaps the `..data`
symlink to it in one rename; `tls.crt` and `tls.key` are symlinks through `..data`. So a reader sees
the old pair or the new pair, never half of each. cert-manager renewing a certificate keeps its CA.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography import x509

from support.pki import CertificateAuthority, write_key_pair


def mount_serving_certificate(folder: Path, ca: CertificateAuthority, host: str) -> int:
    """Write (or rotate to) a new certificate for `host` issued by `ca`, plus ca.crt; returns its serial."""
    certificate_pem, key = ca.issue_serving_certificate(host, [host])
    version = folder / f"..{secrets.token_hex(4)}"
    version.mkdir(parents=True)
    write_key_pair(certificate_pem, key, version / "tls.crt", version / "tls.key")
    (version / "ca.crt").write_bytes(ca.certificate_pem)
    link = folder / "..data_tmp"
    link.symlink_to(version.name)
    os.replace(link, folder / "..data")
    for name in ("tls.crt", "tls.key", "ca.crt"):
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(f"..data/{name}")
    return x509.load_pem_x509_certificate(certificate_pem).serial_number
