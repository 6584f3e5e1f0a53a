"""TLS: certificates are verified; a server whose CA is private is refused unless
SSL_CERT_FILE names that CA."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from fake_wandb import FakeWandb


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a server certificate for 127.0.0.1 signed by it."""
    d = tmp_path_factory.mktemp("tls")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "2", "-subj", "/CN=wandb-nexus test CA", cwd=d)  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext",
            cwd=d)  # fmt: skip
    return d


def https_fake(private_ca: Path) -> FakeWandb:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(private_ca / "server.pem", private_ca / "server.key")
    return FakeWandb(tls=context)


SCRIPT = (
    "import warnings, wandb_nexus as wandb\n"
    "warnings.simplefilter('error')\n"
    "run = wandb.init(project='tls'); run.log({'a': 1}); run.finish(); print(run.url)\n"
)


def run_script(fake: FakeWandb, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "SSL_CERT_FILE"}
    environ.update(WANDB_BASE_URL=fake.base_url, WANDB_API_KEY=fake.api_key, **env)
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=cwd, env=environ
    )


def test_private_ca_is_trusted_through_ssl_cert_file(private_ca: Path, tmp_path: Path) -> None:
    with https_fake(private_ca) as fake:
        out = run_script(fake, tmp_path, SSL_CERT_FILE=str(private_ca / "ca.pem"))
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("https://127.0.0.1:")
        state = fake.single_run()
        assert state.history[0]["a"] == 1 and state.complete


def test_unknown_certificate_is_refused_at_once(private_ca: Path, tmp_path: Path) -> None:
    with https_fake(private_ca) as fake:
        out = run_script(fake, tmp_path)
        assert out.returncode != 0
        assert "CommError" in out.stderr and "certificate" in out.stderr
        assert "SSL_CERT_FILE" in out.stderr
        assert fake.runs() == []


@pytest.fixture(scope="module", params=["CA:FALSE", "CA:TRUE"])
def self_signed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A server certificate for 127.0.0.1 that signs itself, with no CA behind it: marked as
    not a CA, or as a CA, which is what `openssl req -x509` makes by default."""
    d = tmp_path_factory.mktemp("self-signed")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
            "-out", "server.pem", "-days", "2", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-addext", f"basicConstraints=critical,{request.param}", cwd=d)  # fmt: skip
    return d


def test_self_signed_certificate_is_refused_unless_named(self_signed: Path, tmp_path: Path) -> None:
    with https_fake(self_signed) as fake:
        refused = run_script(fake, tmp_path)
        assert refused.returncode != 0 and "certificate" in refused.stderr
        assert fake.runs() == []
        trusted = run_script(fake, tmp_path, SSL_CERT_FILE=str(self_signed / "server.pem"))
        assert trusted.returncode == 0, trusted.stderr
        assert fake.single_run().complete
