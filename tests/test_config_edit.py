"""`mirror config allow-host`: the config file edited in place, and read again by those running."""

from __future__ import annotations

import stat
from importlib import resources
from pathlib import Path

import pytest

from mirror.config import load_settings
from mirror.config_edit import add_to_list
from mirror.errors import ConfigError
from mirror.net.allowance import allowance_for


def allow(path: Path, entry: str) -> bool:
    return add_to_list(path, "federation", "allow_hosts", entry)


def test_the_option_line_changes_and_nothing_else(tmp_path: Path) -> None:
    template = (resources.files("mirror") / "mirror.example.toml").read_text()
    config = tmp_path / "mirror.toml"
    config.write_text(template)
    config.chmod(0o600)
    assert allow(config, "127.0.0.1:8790")
    assert allow(config, "[::1]:8790")
    assert not allow(config, "127.0.0.1:8790")  # there already
    edited = config.read_text()
    assert edited == template.replace(
        "allow_hosts = []", 'allow_hosts = ["127.0.0.1:8790", "[::1]:8790"]'
    )
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert load_settings(config, env={}).federation.allow_hosts == ["127.0.0.1:8790", "[::1]:8790"]
    assert [p.name for p in tmp_path.iterdir()] == ["mirror.toml"]  # no temporary file left


def test_a_config_without_the_option_or_its_section_gets_it(tmp_path: Path) -> None:
    older = tmp_path / "older.toml"
    older.write_text(
        "[federation]\n# why\nfollowers_visible = true\n\n# the next section's comment\n"
        '[admin]\ntoken = "t"'
    )
    assert allow(older, "localhost:8790")
    assert older.read_text() == (
        '[federation]\n# why\nfollowers_visible = true\nallow_hosts = ["localhost:8790"]\n\n'
        '# the next section\'s comment\n[admin]\ntoken = "t"\n'
    )
    bare = tmp_path / "bare.toml"
    bare.write_text('[admin]\ntoken = "t"\n')
    assert allow(bare, "localhost:8790")
    settings = load_settings(bare, env={})
    assert settings.federation.allow_hosts == ["localhost:8790"] and settings.admin.token == "t"


def test_a_list_over_several_lines_becomes_one(tmp_path: Path) -> None:
    config = tmp_path / "m.toml"
    config.write_text('[federation]\nallow_hosts = [\n  "a.test:1",\n]\nfollowers_visible = true\n')
    assert allow(config, "b.test:2")
    assert config.read_text() == (
        '[federation]\nallow_hosts = ["a.test:1", "b.test:2"]\nfollowers_visible = true\n'
    )


def test_a_layout_it_cannot_edit_is_left_alone_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "m.toml"
    text = 'federation.allow_hosts = ["a.test:1"]\n'
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        allow(config, "b.test:2")
    assert str(info.value) == (
        f"{config}: cannot edit [federation].allow_hosts in this file's layout; "
        'add "b.test:2" to it by hand'
    )
    assert config.read_text() == text


def test_a_running_service_reads_the_list_again_when_the_file_changes(tmp_path: Path) -> None:
    config = tmp_path / "m.toml"
    config.write_text('[admin]\ntoken = "t"\n')
    allowance = allowance_for(load_settings(config, env={}))
    assert not allowance.allows("127.0.0.1", 8790)
    assert allow(config, "127.0.0.1:8790")
    assert allowance.allows("127.0.0.1", 8790)
    assert not allowance.allows("127.0.0.1", 8791)
    # A file that no longer loads keeps what was read before.
    config.write_text("[federation\n")
    assert allowance.allows("127.0.0.1", 8790)


def test_an_edit_between_reading_the_settings_and_making_the_allowance_counts(
    tmp_path: Path,
) -> None:
    # `serve` reads its settings, then makes its worker a moment later.
    config = tmp_path / "m.toml"
    config.write_text('[admin]\ntoken = "t"\n')
    settings = load_settings(config, env={})
    assert allow(config, "127.0.0.1:8790")
    assert allowance_for(settings).allows("127.0.0.1", 8790)
