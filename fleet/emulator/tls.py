"""HTTPS for the emulator: a local certificate authority (trustme) and a server certificate.

Azure's SDK sends bearer tokens over HTTPS only, so the emulator speaks TLS like ARM does. The CA
and the server certificate live in a directory next to the SQLite file and are made once: a
restarted emulator serves the same certificate, and clients configured with the CA file
(`connection_verify=` in the SDK, `verify=` in httpx) keep working.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trustme

# The names the server certificate is valid for, besides the host it listens on.
LOCAL_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path  # what clients trust
    cert_file: Path  # the server's certificate chain
    key_file: Path


def tls_dir(db_path: str | Path) -> Path:
    """Where the emulator keeps its CA: `<db stem>-tls/` beside the database."""
    db = Path(db_path)
    return db.parent / f"{db.stem}-tls"


def ca_file(db_path: str | Path) -> Path:
    """The CA file clients of an emulator with this database must trust."""
    return tls_dir(db_path) / "ca.pem"


def ensure_certificates(db_path: str | Path, host: str = "127.0.0.1") -> TlsFiles:
    """The emulator's CA and server certificate, made on first use and reused after."""
    folder = tls_dir(db_path)
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    if all(path.exists() for path in (files.ca_file, files.cert_file, files.key_file)):
        return files
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="Fleet emulator")
    names = dict.fromkeys(
        [*LOCAL_NAMES, socket.gethostname(), *([host] if host not in ("0.0.0.0", "::") else [])]
    )
    server = ca.issue_cert(*names, common_name="fleet-emulator")
    ca.cert_pem.write_to_path(str(files.ca_file))
    server.private_key_pem.write_to_path(str(files.key_file))
    files.key_file.chmod(0o600)
    server.cert_chain_pems[0].write_to_path(str(files.cert_file))
    for extra in server.cert_chain_pems[1:]:
        extra.write_to_path(str(files.cert_file), append=True)
    return files


def fast_event_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (not on Windows): the emulator answers every ARM call of
    every worker and floor on one thread, and libuv's loop roughly halves its cost a call."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
