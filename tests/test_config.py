"""Settings: defaults < file < environment, strict types, the documented example."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import pytest

from mirror.config import Settings, iter_options, load_settings
from mirror.errors import ConfigError
from tests.conftest import ROOT


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_without_a_file(tmp_path: Path) -> None:
    settings = load_settings(env={"XDG_DATA_HOME": str(tmp_path)})
    assert settings.source is None
    assert settings.database.url == ""
    assert settings.network.allow_private_networks is False


def test_default_database_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings(env={"MIRROR_DATA_DIR": str(tmp_path / "data")})
    assert settings.database_url == f"sqlite:///{tmp_path / 'data' / 'mirror.db'}"


def test_environment_beats_file_beats_default(tmp_path: Path) -> None:
    config = write(
        tmp_path / "m.toml",
        '[database]\nurl = "sqlite:///file.db"\necho = true\n[admin]\ntoken = "from-file"\n',
    )
    settings = load_settings(config, env={"MIRROR_ADMIN_TOKEN": "from-env"})
    assert settings.database.url == "sqlite:///file.db"
    assert settings.database.echo is True
    assert settings.admin.token == "from-env"
    assert settings.source == config


def test_long_form_and_shortcuts(tmp_path: Path) -> None:
    env = {
        "MIRROR_DATABASE__URL": "sqlite:///long.db",
        "MIRROR_NETWORK__ALLOW_PRIVATE_NETWORKS": "true",
    }
    settings = load_settings(env=env)
    assert settings.database.url == "sqlite:///long.db"
    assert settings.network.allow_private_networks is True
    env["MIRROR_DATABASE_URL"] = "postgresql://db/mirror"
    env["MIRROR_ALLOW_PRIVATE_NETWORKS"] = "false"
    settings = load_settings(env=env)
    assert settings.database.url == "postgresql://db/mirror"  # the shortcut wins
    assert settings.network.allow_private_networks is False


def test_config_file_from_the_environment_and_the_working_directory(
    tmp_path: Path, monkeypatch
) -> None:
    config = write(tmp_path / "elsewhere.toml", '[admin]\ntoken = "x"\n')
    assert load_settings(env={"MIRROR_CONFIG": str(config)}).admin.token == "x"
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "mirror.toml", '[admin]\ntoken = "cwd"\n')
    assert load_settings(env={}).admin.token == "cwd"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[nope]\n", {}, "unknown section [nope]"),
        ("[database]\nurll = 'x'\n", {}, "unknown config key [database].urll"),
        ("[database]\necho = 'yes'\n", {}, "[database].echo must be true or false, got 'yes'"),
        ("[database\n", {}, "invalid TOML"),
        (
            "",
            {"MIRROR_ALLOW_PRIVATE_NETWORKS": "yes"},
            "MIRROR_ALLOW_PRIVATE_NETWORKS: must be true or false",
        ),
        (
            "",
            {"MIRROR_DATABASE__NOPE": "1"},
            "MIRROR_DATABASE__NOPE: unknown config key [database].nope",
        ),
        (
            "[delivery]\nsign_processes = 0\n",
            {},
            "bad.toml: [delivery].sign_processes must be more than 0, got 0",
        ),
        (
            "",
            {"MIRROR_DELIVERY__POLL_INTERVAL_S": "0"},
            "MIRROR_DELIVERY__POLL_INTERVAL_S: [delivery].poll_interval_s must be more than 0",
        ),
        (
            '[federation]\nallow_hosts = ["127.0.0.1:8790", "127.0.0.1"]\n',
            {},
            "bad.toml: [federation].allow_hosts: '127.0.0.1' is not HOST:PORT (e.g. 127.0.0.1:",
        ),
        (
            '[federation]\nallow_hosts = ["::1:8790"]\n',
            {},
            "'::1:8790' is not HOST:PORT (write an IPv6 address as [ADDRESS]:PORT)",
        ),
        (
            "",
            {"MIRROR_FEDERATION__ALLOW_HOSTS": "localhost:80, sandbox:99999"},
            "MIRROR_FEDERATION__ALLOW_HOSTS: [federation].allow_hosts: 'sandbox:99999' is not",
        ),
        (
            "[backfill]\nrate_per_minute = -1\n",
            {},
            "[backfill].rate_per_minute must not be negative, got -1",
        ),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path: Path, text: str, env: dict, message: str) -> None:
    config = write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError) as info:
        load_settings(config, env=env)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_allow_hosts_entries_from_the_file_and_the_environment(tmp_path: Path) -> None:
    from mirror.config import parse_host_port

    config = write(tmp_path / "m.toml", '[federation]\nallow_hosts = ["127.0.0.1:8790"]\n')
    assert load_settings(config, env={}).federation.allow_hosts == ["127.0.0.1:8790"]
    env = {"MIRROR_FEDERATION__ALLOW_HOSTS": "127.0.0.1:8790, [::1]:8790"}
    assert load_settings(config, env=env).federation.allow_hosts == [
        "127.0.0.1:8790",
        "[::1]:8790",
    ]
    assert parse_host_port("Sandbox.Test:8790") == ("sandbox.test", 8790)
    assert parse_host_port("[::1]:8790") == ("::1", 8790)


def test_named_config_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "missing.toml", env={})


def test_example_config_is_packaged_and_identical_to_the_readable_copy() -> None:
    packaged = (resources.files("mirror") / "mirror.example.toml").read_text()
    assert packaged == (ROOT / "config" / "mirror.example.toml").read_text()


def test_example_config_documents_every_option_with_its_default() -> None:
    path = ROOT / "config" / "mirror.example.toml"
    data = tomllib.loads(path.read_text())
    documented = {
        (section, key): value for section, table in data.items() for key, value in table.items()
    }
    defaults = {(section, key): value for section, key, value in iter_options(Settings())}
    assert documented == defaults
    assert load_settings(path, env={}).database == Settings().database


def test_readme_configuration_reference_lists_every_option_with_its_default() -> None:
    import json

    from mirror.config import Settings, iter_options
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()

    def toml(value: object) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | list):
            return json.dumps(value)
        return repr(value)

    missing = [
        f"[{section}].{key} = {toml(value)}"
        for section, key, value in iter_options(Settings())
        if f"| `[{section}].{key}` | `{toml(value)}` |" not in readme
    ]
    assert missing == []


def test_a_command_without_a_config_file_says_where_it_looked_and_what_it_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mirror.cli import main

    monkeypatch.delenv("MIRROR_CONFIG", raising=False)
    monkeypatch.setenv("MIRROR_DATA_DIR", str(tmp_path / "data"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["db", "current"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"there is no {elsewhere / 'mirror.toml'}" in err and "--config" in err
    assert f"database sqlite:///{tmp_path / 'data' / 'mirror.db'}" in err
    # Found (here, or named): not a word.
    write(elsewhere / "mirror.toml", "")
    assert main(["db", "current"]) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.chdir(tmp_path)
    assert main(["--config", str(elsewhere / "mirror.toml"), "db", "current"]) == 0
    assert capsys.readouterr().err == ""
