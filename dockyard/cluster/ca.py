"""The cluster CA: its key and certificate, node keys, CSRs and the certificates it signs.

Owns every certificate of the cluster. The CA key lives only on managers' disks
(`<data-root>/swarm/ca/`), never in the store; a node makes its own key and sends a CSR at
join, so its key never leaves the node. Node certificates carry the node ID as CN, the
role as OU (`swarm-manager` / `swarm-worker`, Docker's names) and the node's addresses as
SANs, with both serverAuth and clientAuth: the same certificate serves etcd (peer and
client ports) and authenticates the daemon to etcd.

Everything goes through the `openssl` CLI (in every Debian base) via `_sys/proc.py`, so the
daemon needs no crypto library. Pure helpers (digests, SSL contexts) never run a process.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dockyard import errdefs
from dockyard._sys import proc

CA_DAYS = 3650
NODE_DAYS = 90  # Docker's default node certificate expiry


@dataclass(frozen=True)
class NodeFiles:
    """Where a node keeps its TLS material."""

    dir: Path

    @property
    def key(self) -> Path:
        return self.dir / "node.key"

    @property
    def cert(self) -> Path:
        return self.dir / "node.crt"

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:  # managers only
        return self.dir / "ca.key"

    def exists(self) -> bool:
        return self.key.exists() and self.cert.exists() and self.ca_cert.exists()


async def _openssl(*args: str, stdin: bytes = b"") -> bytes:
    return (await proc.run(["openssl", *args], timeout=30, stdin=stdin)).stdout


async def create_ca(files: NodeFiles, cluster_id: str) -> None:
    """A new root: an EC P-256 key and a self-signed certificate."""
    files.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    await _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(files.ca_key)
    )
    files.ca_key.chmod(0o600)
    await _openssl("req", "-x509", "-new", "-key", str(files.ca_key), "-sha256", "-days", str(CA_DAYS),
                   "-subj", f"/O={cluster_id}/CN=swarm-ca", "-addext", "basicConstraints=critical,CA:TRUE",
                   "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", str(files.ca_cert))  # fmt: skip


async def make_key_and_csr(files: NodeFiles) -> bytes:
    """This node's own key (kept) and a CSR for the CA (sent)."""
    files.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not files.key.exists():
        await _openssl(
            "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(files.key)
        )
        files.key.chmod(0o600)
    return await _openssl("req", "-new", "-key", str(files.key), "-subj", "/CN=pending")


async def sign(files: NodeFiles, csr_pem: bytes, node_id: str, role: str, cluster_id: str,
               addresses: list[str]) -> bytes:  # fmt: skip
    """A node certificate for csr: the subject is ours to set, never the CSR's."""
    if not files.ca_key.exists():
        raise errdefs.Unavailable("this node holds no cluster CA key (not a manager)")
    if b"BEGIN CERTIFICATE REQUEST" not in csr_pem or len(csr_pem) > 16384:
        raise errdefs.InvalidArgument("invalid certificate signing request")
    sans = ["DNS:localhost", "IP:127.0.0.1"]
    for a in addresses:
        try:
            sans.append(f"IP:{ipaddress.ip_address(a)}")
        except ValueError:
            raise errdefs.InvalidArgument(f"invalid node address {a!r}") from None
    ou = "swarm-manager" if role == "manager" else "swarm-worker"
    with tempfile.TemporaryDirectory() as tmp:
        ext = Path(tmp) / "ext.cnf"
        ext.write_text(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName={','.join(sans)}\n"
        )
        csr = Path(tmp) / "node.csr"
        csr.write_bytes(csr_pem)
        await _openssl("req", "-in", str(csr), "-noout", "-verify")
        return await _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(files.ca_cert), "-CAkey", str(files.ca_key),
            "-set_serial", str(int.from_bytes(os.urandom(15), "big")), "-days", str(NODE_DAYS),
            "-sha256", "-extfile", str(ext), "-subj", f"/O={cluster_id}/OU={ou}/CN={node_id}",
        )  # fmt: skip


def digest(cert_pem: bytes) -> str:
    """sha256 of the certificate's DER: what a join token pins."""
    der = ssl.PEM_cert_to_DER_cert(cert_pem.decode())
    return hashlib.sha256(der).hexdigest()


def client_context(files: NodeFiles) -> ssl.SSLContext:
    """Mutual TLS towards etcd and other managers: our certificate, their CA."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(files.ca_cert))
    ctx.check_hostname = False  # members are reached by IP; the SAN check is the chain's CA
    ctx.load_cert_chain(str(files.cert), str(files.key))
    return ctx


def server_context(files: NodeFiles) -> ssl.SSLContext:
    """The join endpoint: our certificate. A client certificate is optional (a joiner has
    none yet) but verified when given (a node asking for its promotion shows its own)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(files.ca_cert))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.load_cert_chain(str(files.cert), str(files.key))
    return ctx


def peer_node_id(peercert: dict[str, object] | None) -> str | None:
    """The CN of a verified peer certificate (ssl's getpeercert() shape)."""
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):  # type: ignore[attr-defined]
        for k, v in rdn:
            if k == "commonName":
                return str(v)
    return None
