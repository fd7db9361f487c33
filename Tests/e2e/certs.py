"""A small PKI for the receiver TLS tests, made once per test session by the
`openssl` command in a temporary directory.

    ca            the CA sluice trusts for client certificates (client_ca_file)
                  and clients trust for sluice's server certificate
    server        CN=sluice-server-1, SAN IP:127.0.0.1 DNS:localhost, serial 0x1001
    server2       CN=sluice-server-2, same SANs, its own key, serial 0x2002: what a
                  rotation puts on disk
    client        CN=gateway-client (clientAuth), signed by ca
    expired       CN=gateway-expired, signed by ca, notAfter a day before notBefore
    other_ca      a CA sluice does not know
    wrong_ca      CN=gateway-wrong-ca, signed by other_ca

Each certificate is `<name>.pem` with its key in `<name>-key.pem`. Keys are EC
P-256 (fast to make; every TLS 1.2 and 1.3 client takes them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVER_SERIALS = {"server": 0x1001, "server2": 0x2002}

# Extensions, given to `openssl req -addext` and copied into the certificate.
CA_EXTENSIONS = ("basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign")
SERVER_EXTENSIONS = (
    "basicConstraints=critical,CA:FALSE",
    "extendedKeyUsage=serverAuth",
    "subjectAltName=IP:127.0.0.1,DNS:localhost",
)
CLIENT_EXTENSIONS = ("basicConstraints=critical,CA:FALSE", "extendedKeyUsage=clientAuth")


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes]:
        return self.cert.read_bytes(), self.key.read_bytes()


class PKI:
    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ca("ca", "/CN=Sluice Test CA")
        self._ca("other_ca", "/CN=Some Other CA")
        self._leaf("server", "/CN=sluice-server-1", "ca", SERVER_EXTENSIONS, SERVER_SERIALS["server"])
        self._leaf("server2", "/CN=sluice-server-2", "ca", SERVER_EXTENSIONS, SERVER_SERIALS["server2"])
        self._leaf("client", "/CN=gateway-client", "ca", CLIENT_EXTENSIONS, 0x3003)
        self._leaf("expired", "/CN=gateway-expired", "ca", CLIENT_EXTENSIONS, 0x4004, days=-1)
        self._leaf("wrong_ca", "/CN=gateway-wrong-ca", "other_ca", CLIENT_EXTENSIONS, 0x5005)

    # -- paths --------------------------------------------------------------------

    def pair(self, name: str) -> Pair:
        return Pair(self.dir / f"{name}.pem", self.dir / f"{name}-key.pem")

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    def install_server(self, directory: Path, name: str = "server") -> Pair:
        """Copies a server pair to `directory/server.pem` and
        `directory/server-key.pem` (the paths a config names), replacing
        whatever is there by rename, key first, as a secret volume update does."""
        directory.mkdir(parents=True, exist_ok=True)
        source = self.pair(name)
        target = Pair(directory / "server.pem", directory / "server-key.pem")
        for src, dst in ((source.key, target.key), (source.cert, target.cert)):
            tmp = dst.with_name(f".{dst.name}.tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        return target

    # -- making them ------------------------------------------------------------------

    def _openssl(self, *args: str) -> None:
        result = subprocess.run(["openssl", *args], cwd=self.dir, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {result.stderr}")

    @staticmethod
    def _addext(extensions) -> list[str]:
        return [arg for extension in extensions for arg in ("-addext", extension)]

    def _ca(self, name: str, subject: str) -> None:
        self._openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}-key.pem", "-out", f"{name}.pem", "-days", "30", "-subj", subject,
            *self._addext(CA_EXTENSIONS),
        )

    def _leaf(self, name: str, subject: str, ca: str, extensions, serial: int, days: int = 30) -> None:
        self._openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", "-subj", subject, *self._addext(extensions),
        )
        self._openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem",
            "-set_serial", str(serial), "-days", str(days), "-copy_extensions", "copyall", "-out", f"{name}.pem",
        )


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> PKI:
    """The session's PKI (import this fixture into a test module to use it)."""
    return PKI(tmp_path_factory.mktemp("pki"))
