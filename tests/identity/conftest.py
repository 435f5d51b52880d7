"""Shared by the identity tests: the CLI pointed at the test's database and a config file."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import SECRETS
from tests.test_contention import write_config


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("HANDOFF_DATABASE_URL", db_url)
    monkeypatch.setenv("HANDOFF_CONFIG", str(write_config(tmp_path)))
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    return CliRunner()
