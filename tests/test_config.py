"""Configuration: defaults with no file, precise errors for bad files, missing secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from handoff.config import ConfigError, load_config, load_settings, parse_config


def test_defaults_work_without_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HANDOFF_CONFIG", raising=False)
    monkeypatch.delenv("HANDOFF_DATABASE_URL", raising=False)
    settings = load_settings()
    assert settings.config_path is None
    assert settings.database_url == "sqlite:///./handoff.db"
    assert settings.config.gateway.body_limit_bytes == 1024 * 1024
    assert settings.config.sources == {}


def test_environment_picks_file_and_database(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "h.toml"
    path.write_text('[sources.shop]\nvendor = "shopify"\nrole = "pos"\nsecret_env = "S"\n')
    monkeypatch.setenv("HANDOFF_CONFIG", str(path))
    monkeypatch.setenv("HANDOFF_DATABASE_URL", "postgresql://u@h/db")
    settings = load_settings()
    assert settings.config_path == path
    assert settings.database_url == "postgresql://u@h/db"
    assert settings.config.sources["shop"].vendor == "shopify"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"sources": {"shop": {"vendor": "shopfy", "role": "pos", "secret_env": "S"}}},
            "sources.shop.vendor = 'shopfy': Input should be 'shopify', 'hubspot'",
        ),
        (
            {"sources": {"shop": {"vendor": "shopify", "role": "till", "secret_env": "S"}}},
            "sources.shop.role = 'till'",
        ),
        (
            {"sources": {"shop": {"vendor": "shopify", "role": "pos"}}},
            "sources.shop.secret_env: required key is missing",
        ),
        (
            {
                "sources": {
                    "shop": {"vendor": "shopify", "role": "pos", "secret_env": "S", "secret": "x"}
                }
            },
            "sources.shop.secret: unknown key",
        ),
        ({"gateway": {"body_limit_bytes": 10}}, "gateway.body_limit_bytes = 10"),
        (
            {"sources": {"a/b": {"vendor": "shopify", "role": "pos", "secret_env": "S"}}},
            "source name 'a/b'",
        ),
        (
            {
                "sources": {
                    "s": {
                        "vendor": "shopify",
                        "role": "pos",
                        "secret_env": "S",
                        "transient_status": 500,
                    }
                }
            },
            "sources.s.transient_status = 500: Input should be 503 or 429",
        ),
    ],
)
def test_bad_values_name_key_value_and_what_is_allowed(data: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, origin="handoff.toml")
    assert expected in str(info.value)
    assert str(info.value).startswith("handoff.toml: ")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[sources.shop\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_secrets_come_from_the_environment_only() -> None:
    config = parse_config(
        {
            "sources": {
                "shop": {
                    "vendor": "shopify",
                    "role": "pos",
                    "secret_env": "NEW",
                    "previous_secret_env": "OLD",
                }
            }
        }
    )
    from handoff.config import Settings

    settings = Settings(config=config, database_url="sqlite:///x.db", config_path=None)
    assert settings.secrets_for("shop", {"NEW": "n", "OLD": "o"}) == [b"n", b"o"]
    assert settings.secrets_for("shop", {"OLD": "o"}) == [b"o"]
    assert settings.missing_secrets({"OLD": "o"}) == [("shop", "NEW")]
    assert settings.missing_secrets({"NEW": "n"}) == []


def test_program_rules_are_validated_with_the_rest() -> None:
    config = parse_config({"program": {"trigger": "paid", "pending_days": 14}})
    assert config.program.trigger == "paid"
    with pytest.raises(ConfigError) as info:
        parse_config({"program": {"trigger": "placed"}}, origin="handoff.toml")
    assert "handoff.toml: program.trigger = 'placed'" in str(info.value)
    assert "allowed: 'paid' or 'fulfilled'" in str(info.value)
