"""Throwaway certificates via openssl (EC keys): a CA and leaf certs for the Hub proxy and TLS engines."""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path


def _openssl(cwd: Path, command: str) -> None:
    done = subprocess.run(["openssl", *shlex.split(command)], capture_output=True, text=True, cwd=cwd)
    if done.returncode:
        raise RuntimeError(f"openssl {command} failed: {done.stderr.strip()}")


_EC = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"  # EC keys: milliseconds to make, unlike RSA


def _make_ca(d: Path) -> None:
    _openssl(d, f"req -x509 {_EC} -days 7 -subj /CN=dockerbot-sandbox-ca -keyout ca-key.pem -out ca.pem")


def _make_leaf(d: Path, who: str, ext: str) -> None:
    (d / f"{who}.ext").write_text(ext + "\n")
    _openssl(d, f"req {_EC} -subj /CN={who} -keyout {who}-key.pem -out {who}.csr")
    _openssl(
        d,
        f"x509 -req -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 7 -in {who}.csr "
        f"-extfile {who}.ext -out {who}.pem",
    )


@dataclass(frozen=True)
class TlsFiles:
    """PEM paths: for an engine its CA, server cert and key; for a client its CA, client cert and key."""

    ca: Path
    cert: Path
    key: Path


def make_tls(directory: Path) -> tuple[TlsFiles, TlsFiles]:
    """A throwaway CA, a server cert for 127.0.0.1 and a client cert, via openssl: (server, client)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    _make_ca(d)
    _make_leaf(d, "server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth")
    _make_leaf(d, "client", "extendedKeyUsage=clientAuth")
    return (
        TlsFiles(d / "ca.pem", d / "server.pem", d / "server-key.pem"),
        TlsFiles(d / "ca.pem", d / "client.pem", d / "client-key.pem"),
    )
