"""Where the dashboard looks for reconciliation runs (`[reconcile] runs_dir`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from handoff.config import ConfigError, Settings, load_config, parse_config, reconcile_runs_dir


def settings(url: str, config_path: Path | None = None, **reconcile: str) -> Settings:
    config = (
        load_config(config_path)
        if config_path is not None
        else parse_config({"reconcile": reconcile} if reconcile else {})
    )
    return Settings(config=config, database_url=url, config_path=config_path)


def test_default_is_beside_the_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'handoff.db'}"
    assert reconcile_runs_dir(settings(url)) == tmp_path / "data" / "reconcile-runs"


def test_default_on_postgresql_is_beside_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "handoff.toml"
    config.parent.mkdir()
    config.write_text("", encoding="utf-8")
    found = reconcile_runs_dir(settings("postgresql://h/db", config))
    assert found == tmp_path / "etc" / "reconcile-runs"


def test_a_relative_setting_is_taken_from_the_config_files_directory(tmp_path: Path) -> None:
    config = tmp_path / "handoff.toml"
    config.write_text('[reconcile]\nruns_dir = "runs/recon"\n', encoding="utf-8")
    found = reconcile_runs_dir(settings("sqlite:////var/lib/handoff.db", config))
    assert found == tmp_path / "runs" / "recon"
    absolute = settings("postgresql://h/db", runs_dir="/srv/runs")
    assert reconcile_runs_dir(absolute) == Path("/srv/runs")


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"reconcile\.dir: unknown key"):
        parse_config({"reconcile": {"dir": "x"}})
