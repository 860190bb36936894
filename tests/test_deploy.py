"""The deploy files: systemd units verified, the Dockerfile linted, the compose file validated."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_units_verify(tmp_path: Path) -> None:
    # systemd-analyze needs ExecStart's binary to exist: point it at this install's `mirror`.
    units = []
    for name, as_name in (
        ("fedimirror.service", "fedimirror.service"),
        ("fedimirror-worker@.service", "fedimirror-worker@1.service"),
    ):
        text = (
            (DEPLOY / name).read_text().replace("/opt/fedimirror/bin/mirror", str(BIN / "mirror"))
        )
        (tmp_path / as_name).write_text(text)
        units.append(str(tmp_path / as_name))
    result = run("systemd-analyze", "verify", *units)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_units_run_the_commands_with_hardening() -> None:
    web = (DEPLOY / "fedimirror.service").read_text()
    worker = (DEPLOY / "fedimirror-worker@.service").read_text()
    assert "ExecStart=/opt/fedimirror/bin/mirror serve" in web
    assert "ExecStart=/opt/fedimirror/bin/mirror worker" in worker
    for unit in (web, worker):
        for line in (
            "User=fedimirror",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "ReadWritePaths=/var/lib/fedimirror",
            "KillSignal=SIGTERM",
            "Restart=on-failure",
        ):
            assert line in unit


def test_dockerfile_passes_hadolint() -> None:
    result = run(str(BIN / "hadolint"), str(DEPLOY / "Dockerfile"))
    assert result.returncode == 0, result.stdout + result.stderr
    text = (DEPLOY / "Dockerfile").read_text()
    assert "USER 10001" in text and text.count("FROM ") == 2  # non-root, multi-stage


def test_compose_file_matches_the_compose_schema() -> None:
    result = run(
        str(BIN / "check-jsonschema"),
        "--builtin-schema",
        "vendor.compose-spec",
        str(DEPLOY / "compose.yaml"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = (DEPLOY / "compose.yaml").read_text()
    assert "postgres" in text and 'command: ["worker"]' in text and "keys:/data" in text


def test_nginx_passes_host_and_forwarded_headers() -> None:
    text = (DEPLOY / "nginx.conf").read_text()
    for line in (
        "proxy_set_header Host $host;",
        "proxy_set_header X-Forwarded-For",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "ssl_certificate",
    ):
        assert line in text
