"""A tiny PKI for the lab's API server, the way envtest does it (``cryptography`` package).

ECDSA P-256 keys: generated in milliseconds, accepted by kube-apiserver for serving, client
certificates and service-account tokens (ES256).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=365)

# name -> (CN, O): client identities the lab writes kubeconfigs for.
CLIENTS: dict[str, tuple[str, str | None]] = {
    "admin": ("recops-admin", "system:masters"),
    "controller-manager": ("system:kube-controller-manager", None),
    "scheduler": ("system:kube-scheduler", None),
    "kwok": ("recops-kwok", "system:masters"),
    "nobody": ("recops-nobody", None),  # authenticated but without any RBAC binding (for tests)
}


@dataclass(frozen=True)
class Pki:
    dir: Path

    @property
    def ca_crt(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def serving_crt(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    def client_crt(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def client_key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    def complete(self) -> bool:
        files = [self.ca_crt, self.ca_key, self.serving_crt, self.serving_key, self.sa_key, self.sa_pub]
        files += [self.client_crt(n) for n in CLIENTS] + [self.client_key(n) for n in CLIENTS]
        return all(f.exists() for f in files)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    os.chmod(path, 0o600 if private else 0o644)


def _sign(
    subject: x509.Name,
    pub: ec.EllipticCurvePublicKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    *,
    is_ca: bool = False,
    server: bool = False,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_name)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if is_ca:
        b = b.add_extension(
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
    else:
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(ca_key, hashes.SHA256())


def serving_sans() -> list[x509.GeneralName]:
    dns = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    ips = ["127.0.0.1", "10.0.0.1"]
    return [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]


def ensure_pki(directory: Path) -> Pki:
    """Create the CA, serving cert, SA key pair and client certs once; reuse them afterwards."""
    pki = Pki(directory)
    if pki.complete():
        return pki
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    ca_key = _key()
    ca_name = _name("recops-lab-ca")
    ca = _sign(ca_name, ca_key.public_key(), ca_key, ca_name, is_ca=True)
    _write(pki.ca_key, _key_pem(ca_key), private=True)
    _write(pki.ca_crt, ca.public_bytes(serialization.Encoding.PEM))
    srv_key = _key()
    srv = _sign(_name("kube-apiserver"), srv_key.public_key(), ca_key, ca_name, server=True, sans=serving_sans())
    _write(pki.serving_key, _key_pem(srv_key), private=True)
    _write(pki.serving_crt, srv.public_bytes(serialization.Encoding.PEM))
    sa = _key()
    _write(pki.sa_key, _key_pem(sa), private=True)
    _write(
        pki.sa_pub,
        sa.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    )
    for name, (cn, org) in CLIENTS.items():
        k = _key()
        c = _sign(_name(cn, org), k.public_key(), ca_key, ca_name)
        _write(pki.client_key(name), _key_pem(k), private=True)
        _write(pki.client_crt(name), c.public_bytes(serialization.Encoding.PEM))
    return pki


def kubeconfig_text(server: str, pki: Pki, client: str, context: str = "recops-lab") -> str:
    """A self-contained kubeconfig (certificates embedded) for one client identity."""

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    return f"""apiVersion: v1
kind: Config
clusters:
- name: {context}
  cluster:
    server: {server}
    certificate-authority-data: {b64(pki.ca_crt)}
users:
- name: {context}-{client}
  user:
    client-certificate-data: {b64(pki.client_crt(client))}
    client-key-data: {b64(pki.client_key(client))}
contexts:
- name: {context}
  context:
    cluster: {context}
    user: {context}-{client}
    namespace: default
current-context: {context}
"""
