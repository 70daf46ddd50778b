"""Make the certificates of a cluster's node plane: one CA, one certificate per node.

    python -m nodes.certs --out certs --names nameserver,master,secondary1,secondary2
    python -m nodes.certs --out certs --names secondary3          # add a node later
    python -m nodes.certs --out certs --names client-alice        # a Python client of the master
    python -m nodes.certs --out certs --names master --renew      # re-issue (new key, same CA)
    python -m nodes.certs --out certs --renew-within 30           # re-issue what expires soon
    python -m nodes.certs --out certs --show                      # names and expiry dates

Layout (DIR/NAME is exactly what a node's --tls-dir takes):

    DIR/ca.crt  DIR/ca.key                  the CA (the key: mode 0600; --ca-dir moves both)
    DIR/NAME/ca.crt  node.crt  node.key     per node (node.key: mode 0600)

A certificate names its node in its subject's common name and in a DNS subjectAltName; the
nodes authorize by that name (see docs/security.md). Idempotent: what exists is kept, so a
second run with the same names changes nothing. Keys are ECDSA P-256 (cheap handshakes).
"""
from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import re
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ORG = "replog"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _write(path: Path, data: bytes, private: bool = False) -> None:
    """Write atomically (temp file + rename); private files are created with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def cert_name(cert: x509.Certificate) -> str:
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else ""


class CA:
    """The cluster's certificate authority: DIR/ca.crt and DIR/ca.key."""

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.cert, self.key = cert, key

    @classmethod
    def load_or_create(cls, ca_dir: Path, days: int) -> tuple["CA", bool]:
        crt, key = ca_dir / "ca.crt", ca_dir / "ca.key"
        if crt.exists() and key.exists():
            return cls(load_cert(crt), serialization.load_pem_private_key(key.read_bytes(), None)), False
        if crt.exists() or key.exists():
            raise SystemExit(f"{ca_dir} holds only one of ca.crt and ca.key: refusing to guess")
        k = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                          x509.NameAttribute(NameOID.COMMON_NAME, f"{ORG} cluster CA")])
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(k.public_key())
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(k.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, key_cert_sign=True,
                                             crl_sign=True, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(ski, critical=False)
                .sign(k, hashes.SHA256()))
        _write(key, _key_pem(k), private=True)
        _write(crt, _cert_pem(cert))
        if ca_dir.stat().st_uid == os.getuid():
            os.chmod(ca_dir, 0o700)   # the CA key's folder: its owner only
        return cls(cert, k), True

    def issue(self, name: str, days: int, hosts: list[str]) -> tuple[x509.Certificate, bytes]:
        """A certificate for node `name` (CN and DNS SAN), usable as TLS server and client."""
        k = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.DNSName(name)]
        for h in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                if h != name:
                    sans.append(x509.DNSName(h))
        now = _now()
        ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                                         x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(self.cert.subject).public_key(k.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(min(now + dt.timedelta(days=days), self.cert.not_valid_after_utc))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=True, key_cert_sign=False,
                                             crl_sign=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(k.public_key()),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        return cert, _key_pem(k)


def write_node(out: Path, ca: CA, name: str, days: int, hosts: list[str]) -> None:
    cert, key = ca.issue(name, days, hosts)
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    _write(d / "node.key", key, private=True)
    _write(d / "node.crt", _cert_pem(cert))
    _write(d / "ca.crt", _cert_pem(ca.cert))


def ensure(out: str | Path, names: list[str], hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
           days: int = 825, ca_days: int = 3650) -> Path:
    """Make what is missing under `out` for `names` (a CA if none); keep the rest."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ca, _ = CA.load_or_create(out, ca_days)
    for name in names:
        if not (out / name / "node.crt").exists():
            write_node(out, ca, name, days, list(hosts))
    return out


def _git_exposed(path: Path) -> str | None:
    """When `path` lies in a git work tree and git would add it (`git add -A`), that tree's
    root; else None (not in a work tree, ignored, or no git)."""
    import subprocess
    try:
        top = subprocess.run(["git", "-C", str(path.parent), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, timeout=5)
        if top.returncode != 0:
            return None
        ignored = subprocess.run(["git", "-C", str(path.parent), "check-ignore", "-q",
                                  str(path)], capture_output=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return None if ignored.returncode == 0 else top.stdout.strip()


def warn_ca_key(key: Path) -> None:
    """Say loudly where the CA's private key went: whoever holds it can issue certificates,
    that is admit nodes and clients into the cluster."""
    key = key.resolve()
    lines = [f"WROTE THE CA PRIVATE KEY: {key}",
             "Whoever holds it can issue certificates, i.e. join any cluster of this CA as a "
             "node or client.",
             "Keep it off the machines that run nodes and out of version control; in "
             "production keep it offline or in a secrets manager (--ca-dir chooses where "
             "it goes; docs/security.md)."]
    exposed = _git_exposed(key)
    if exposed:
        lines.append(f"IT IS INSIDE THE GIT WORK TREE {exposed} AND NOT IGNORED: `git add -A` "
                     "would commit it. Move it, or ignore it (add it to .gitignore).")
    width = max(len(line) for line in lines)
    print("!" * min(width, 100), *lines, "!" * min(width, 100), sep="\n", file=sys.stderr)


def _days_left(cert: x509.Certificate) -> float:
    return (cert.not_valid_after_utc - _now()).total_seconds() / 86400


def parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="python -m nodes.certs",
        description="Make the CA and per-node certificates for replog's mutual TLS (--tls-dir). "
                    "Idempotent: existing files are kept unless --renew or --renew-within asks "
                    "otherwise. See docs/security.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default=env("REPLOG_CERTS_OUT", "certs"),
                   help="directory that receives NAME/{ca.crt,node.crt,node.key} "
                        "[env REPLOG_CERTS_OUT]")
    p.add_argument("--names", default=env("REPLOG_CERTS_NAMES", ""),
                   help="comma-separated node names (nameserver, master, secondary1, ..., "
                        "client-NAME for a Python client) [env REPLOG_CERTS_NAMES]")
    p.add_argument("--ca-dir", default=env("REPLOG_CERTS_CA_DIR", ""),
                   help="where ca.crt and ca.key live (empty: --out); keep it off the nodes "
                        "[env REPLOG_CERTS_CA_DIR]")
    p.add_argument("--hosts", default=env("REPLOG_CERTS_HOSTS", "localhost,127.0.0.1"),
                   help="extra DNS names / IPs put in every new certificate's subjectAltName, "
                        "for stock Pyro5 clients that check host names (replog's own "
                        "connections check the node name instead) [env REPLOG_CERTS_HOSTS]")
    p.add_argument("--days", type=int, default=int(env("REPLOG_CERTS_DAYS", "825")),
                   help="validity of node certificates [env REPLOG_CERTS_DAYS]")
    p.add_argument("--ca-days", type=int, default=int(env("REPLOG_CERTS_CA_DAYS", "3650")),
                   help="validity of a new CA [env REPLOG_CERTS_CA_DAYS]")
    p.add_argument("--renew", action="store_true",
                   help="re-issue the certificates of --names (new keys, same CA)")
    p.add_argument("--renew-within", type=float, default=None, metavar="DAYS",
                   help="re-issue every certificate under --out (or of --names) that expires "
                        "within DAYS")
    p.add_argument("--show", action="store_true", help="list the certificates and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = Path(args.out)
    ca_dir = Path(args.ca_dir) if args.ca_dir else out
    names = [n.strip() for n in args.names.split(",") if n.strip()]
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    for n in names:
        if not NAME_RE.match(n):
            parser().error(f"bad name {n!r}: letters, digits, '.', '_' and '-' only")
    if args.show:
        for crt in sorted(out.glob("*/node.crt")):
            c = load_cert(crt)
            print(f"{cert_name(c):<24} expires {c.not_valid_after_utc:%Y-%m-%d} "
                  f"({_days_left(c):.0f} days)  {crt}")
        return 0
    if args.renew_within is None and not names:
        parser().error("--names is required (or --show, or --renew-within)")
    out.mkdir(parents=True, exist_ok=True)
    ca_dir.mkdir(parents=True, exist_ok=True)
    ca, created = CA.load_or_create(ca_dir, args.ca_days)
    print(f"{'created' if created else 'using'} CA {ca_dir / 'ca.crt'} "
          f"(expires {ca.cert.not_valid_after_utc:%Y-%m-%d})")
    if created:
        warn_ca_key(ca_dir / "ca.key")
    if ca_dir != out and not (out / "ca.crt").exists():
        _write(out / "ca.crt", _cert_pem(ca.cert))
    todo = names or [d.name for d in sorted(out.iterdir()) if (d / "node.crt").exists()]
    for name in todo:
        crt = out / name / "node.crt"
        reason = None
        if not crt.exists() or not (out / name / "node.key").exists():
            reason = "created"
        elif args.renew:
            reason = "renewed"
        elif args.renew_within is not None and _days_left(load_cert(crt)) < args.renew_within:
            reason = "renewed (expiring)"
        elif not (out / name / "ca.crt").exists() or load_cert(out / name / "ca.crt") != ca.cert:
            reason = "renewed (other CA)"
        if reason is None:
            print(f"kept    {out / name}")
            continue
        write_node(out, ca, name, args.days, hosts)
        print(f"{reason:<7} {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
