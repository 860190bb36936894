"""`mirror communities host|list|unhost`, names, and the config's [[hosted]] tables."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from mirror.config import HostedEntry, load_settings
from mirror.db.models import Follower, HostedCommunity, LocalActor
from mirror.db.session import make_engine, write_transaction
from mirror.errors import ConfigError
from mirror.federation.communities import HostingError, apply_config, list_hosted
from mirror.federation.community_names import InvalidName, candidates, check_name
from mirror.signatures import MasterKey
from tests.test_cli_service import home, run  # noqa: F401 -- the fixture

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def mirror(capsys, home: Path) -> Path:  # noqa: F811
    """An initialised mirror with the samples ingested; returns its config file."""
    config = home / "mirror.toml"
    assert (
        run(capsys, "init", "--base-url", "https://mirror.example.org", "--config", str(config))[0]
        == 0
    )
    assert run(capsys, "--config", str(config), "ingest", "--samples")[0] == 0
    return config


def engine_of(config: Path) -> sa.Engine:
    return make_engine(load_settings(config).database_url)


def test_names_lemmy_takes() -> None:
    for good in ("abc", "socialism_lemmy_ml", "a" * 20, "x_1"):
        assert check_name(good) == good
    for bad in ("ab", "a" * 21, "Socialism", "bike-repair", "vélo", "a b", ""):
        with pytest.raises(InvalidName, match="3 to 20 characters of a-z, 0-9 and _"):
            check_name(bad)


def test_default_names_from_handle_or_title() -> None:
    assert candidates(name="socialism", instance="lemmy.ml", title=None) == [
        "socialism_lemmy_ml",
        "socialism_lemmy",
        "socialism",
    ]
    # Longer than 20: cut at a word, then shorter forms.
    assert candidates(name="bikerepair", instance="bikes.example", title=None)[0] == (
        "bikerepair_bikes"
    )
    assert candidates(name=None, instance="lemmy.example", title="Seed Savers!")[0] == (
        "seed_savers_lemmy"
    )
    assert candidates(name="ok", instance=None, title=None) == ["ok_archive"]
    assert candidates(name=None, instance=None, title="Вело") == ["archive"]
    assert all(check_name(n) for n in candidates(name="x" * 40, instance="a.b", title=None))


def test_host_list_unhost(capsys, mirror: Path) -> None:
    cfg = ["--config", str(mirror)]
    code, out, err = run(capsys, *cfg, "communities", "host", "bikerepair@bikes.example")
    assert code == 0, err
    assert "name bikerepair_bikes: made from !bikerepair@bikes.example" in out
    assert "follow it as !bikerepair_bikes@mirror.example.org" in out
    assert "https://mirror.example.org/c/bikerepair_bikes" in out
    # Known only by its title: a name from the title, said.
    code, out, err = run(capsys, *cfg, "communities", "host", "Seed Savers", "--title", "Seeds")
    assert code == 0, err
    assert "name seed_savers_lemmy: made from Seed Savers@lemmy.example (its title)" in out
    # Hosting the same source again changes nothing, under any spelling.
    code, out, _ = run(capsys, *cfg, "communities", "host", "!bikerepair@bikes.example")
    assert code == 0 and "bikerepair_bikes: unchanged" in out
    code, out, _ = run(capsys, *cfg, "communities", "list")
    assert code == 0
    assert "bikerepair_bikes" in out and "seed_savers_lemmy" in out and "Seeds" in out
    engine = engine_of(mirror)
    with engine.connect() as conn:
        kinds = dict(conn.execute(sa.select(LocalActor.username, LocalActor.kind)).all())
    assert kinds["bikerepair_bikes"] == "group" and kinds["mirror"] == "bot"
    # Never followed: unhosting frees the name (actor and key deleted).
    code, out, _ = run(capsys, *cfg, "communities", "unhost", "seed_savers_lemmy")
    assert code == 0 and "its name is free again" in out
    with engine.connect() as conn:
        assert (
            conn.scalar(
                sa.select(LocalActor.username).where(LocalActor.username == "seed_savers_lemmy")
            )
            is None
        )
    code, _, err = run(capsys, *cfg, "communities", "unhost", "seed_savers_lemmy")
    assert code == 1 and "no hosted community is called 'seed_savers_lemmy'" in err


def test_a_followed_community_is_permanent(capsys, mirror: Path) -> None:
    cfg = ["--config", str(mirror)]
    run(capsys, *cfg, "communities", "host", "bikerepair@bikes.example", "--name", "bikes")
    engine = engine_of(mirror)
    with write_transaction(engine) as conn:
        conn.execute(
            sa.insert(Follower.__table__),
            [
                {
                    "local_username": "bikes",
                    "actor_url": "https://lemmy.example/u/reader",
                    "inbox": "https://lemmy.example/u/reader/inbox",
                    "shared_inbox": "https://lemmy.example/inbox",
                    "follow_id": "https://lemmy.example/activities/follow/1",
                    "state": "active",
                    "created_at": NOW,
                    "updated_at": NOW,
                }
            ],
        )
    code, _, err = run(capsys, *cfg, "communities", "unhost", "bikes")
    assert code == 1
    assert "1 followers now, on 1 servers" in err and "--force" in err
    code, out, _ = run(capsys, *cfg, "communities", "unhost", "bikes", "--force")
    assert code == 0 and "410 Gone" in out and "reserved" in out
    code, out, _ = run(capsys, *cfg, "communities", "list")
    assert "unhosted" in out
    # The name stays with its source: another source cannot take it...
    code, _, err = run(capsys, *cfg, "communities", "host", "Seed Savers", "--name", "bikes")
    assert code == 1 and "already hosts !bikerepair@bikes.example" in err and "reserved" in err
    # ...and hosting the same source again brings it back.
    code, out, _ = run(capsys, *cfg, "communities", "host", "bikerepair@bikes.example")
    assert code == 0 and "bikes: revived" in out


def test_names_refused(capsys, mirror: Path) -> None:
    cfg = ["--config", str(mirror), "communities", "host"]
    cases = {
        ("bikerepair@bikes.example", "--name", "Bike-Repair"): "3 to 20 characters",
        ("bikerepair@bikes.example", "--name", "mirror"): "taken by the bot",
        # An author of the reconstruction: the name its puppet would get.
        ("bikerepair@bikes.example", "--name", "milo_wheels_example"): "puppet name",
        ("nosuch@nowhere.example",): "no reconstructed community is called that",
    }
    for args, message in cases.items():
        code, _, err = run(capsys, *cfg, *args)
        assert code == 1 and message in err, (args, err)
        assert "\n" not in err.strip()
    code, _, _ = run(capsys, *cfg, "bikerepair@bikes.example", "--name", "bikes")
    assert code == 0
    code, _, err = run(capsys, *cfg, "Seed Savers", "--name", "bikes")
    assert code == 1 and "already hosts" in err
    code, _, err = run(capsys, *cfg, "bikerepair@bikes.example", "--name", "bikes2")
    assert code == 1 and "already hosted as bikes" in err
    code, out, _ = run(capsys, *cfg, "unknown")
    assert code == 0 and "name unknown_community" in out


def test_hosted_tables_in_the_config(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[[hosted]]\nsource = "bikerepair@bikes.example"\nname = "bikes"\n\n'
        '[[hosted]]\nsource = "Seed Savers"\ntitle = "Seeds"\n'
    )
    settings = load_settings(path, env={})
    assert settings.hosted == (
        HostedEntry("bikerepair@bikes.example", "bikes", ""),
        HostedEntry("Seed Savers", "", "Seeds"),
    )
    for text, message in (
        ('[[hosted]]\nname = "x"\n', r"\[\[hosted\]\] #1: source is required"),
        ('[[hosted]]\nsource = "a"\nsize = 1\n', "unknown key 'size'"),
        ("[[hosted]]\nsource = 3\n", "source must be a string"),
        ('[hosted]\nsource = "a"\n', "must be \\[\\[hosted\\]\\] tables"),
    ):
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_settings(path, env={})


def test_config_entries_are_added_or_updated_never_removed(capsys, mirror: Path) -> None:
    run(capsys, "--config", str(mirror), "communities", "host", "Seed Savers")
    engine = engine_of(mirror)
    key = MasterKey.generate()
    entries = [HostedEntry("bikerepair@bikes.example", "bikes", "")]
    with write_transaction(engine) as conn:
        lines = apply_config(conn, entries, master_key=key, now=NOW, bot_username="mirror")
    assert "[[hosted]] bikes: created" in lines
    assert any("seed_savers_lemmy is hosted but not in [[hosted]]" in line for line in lines)
    entries = [HostedEntry("bikerepair@bikes.example", "bikes", "Bikes, archived")]
    with write_transaction(engine) as conn:
        lines = apply_config(conn, entries, master_key=key, now=NOW, bot_username="mirror")
        assert "[[hosted]] bikes: updated" in lines
        hosted = {h.name: h for h in list_hosted(conn)}
    assert hosted["bikes"].title == "Bikes, archived" and "seed_savers_lemmy" in hosted
    with write_transaction(engine) as conn, pytest.raises(HostingError, match=r"#1 \('x@y'\)"):
        apply_config(conn, [HostedEntry("x@y")], master_key=key, now=NOW, bot_username="mirror")
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(HostedCommunity)) == 2


def test_status_and_a_backfill_into_a_hosted_community(capsys, mirror: Path) -> None:
    """A run into our own Group (no network), then a follower from a new server: its
    backlog is queued once and `communities status` shows it per server."""
    import asyncio
    import json

    from mirror.clock import FrozenClock
    from mirror.federation import backlog

    cfg = ["--config", str(mirror)]
    run(capsys, *cfg, "communities", "host", "bikerepair@bikes.example", "--name", "bikes")
    code, out, _ = run(capsys, *cfg, "communities", "status")
    assert code == 0 and "!bikes@mirror.example.org: no followers yet" in out
    code, _, err = run(capsys, *cfg, "communities", "status", "nothere")
    assert code == 1 and "no hosted community is called 'nothere'" in err
    code, out, err = run(capsys, *cfg, "backfill", "--to", "!bikes@mirror.example.org")
    assert code == 0, err
    assert "hosted here: stored at once, and announced" in out
    assert "plan: 10 posts" in out and "left out: 1 (neither title nor body)" in out
    code, _, err = run(
        capsys, *cfg, "backfill", "--to", "!bikes@mirror.example.org", "--from", "unknown"
    )
    assert code == 1 and "takes only that community's posts" in err

    settings = load_settings(mirror)
    engine = engine_of(mirror)
    from mirror.cli.wiring import federation_for

    federation = federation_for(settings)
    with write_transaction(engine) as conn:
        queued = backlog.start(
            conn,
            group="bikes",
            inbox="https://lemmy.example/inbox",
            follow_id="https://lemmy.example/activities/follow/1",
            urls=federation.urls,
            now=FrozenClock(NOW).now(),
            rate=6.0,
            software="lemmy",
        )
        # A server whose software has no lookup: nothing to ask it, no copies.
        backlog.start(
            conn,
            group="bikes",
            inbox="https://mbin.example/inbox",
            follow_id="https://mbin.example/activities/follow/1",
            urls=federation.urls,
            now=NOW,
            rate=6.0,
            software="mbin",
        )
        again = backlog.start(
            conn,
            group="bikes",
            inbox="https://lemmy.example/inbox",
            follow_id="https://lemmy.example/activities/follow/2",
            urls=federation.urls,
            now=NOW,
            rate=6.0,
        )
    assert queued and queued > 11 and again is None  # once per server
    asyncio.run(federation.close())
    code, out, _ = run(capsys, *cfg, "communities", "status", "bikes", "--json")
    (community,) = json.loads(out)
    server, mbin = community["servers"]
    assert server["host"] == "lemmy.example" and server["followers"] == 0
    assert server["backlog"]["items"] == queued == server["backlog"]["pending"]
    # Each of the 10 posts and 17 comments is asked about once delivered.
    copies = server["copies"]
    assert copies["states"] == {"queued": 27} and copies["unverifiable"] is None
    assert (copies["confirmed"], copies["missing"], copies["awaiting_lookup"]) == (0, 0, 0)
    assert mbin["host"] == "mbin.example" and mbin["copies"]["states"] == {}
    assert mbin["copies"]["unverifiable"] == (
        "mbin offers no lookup of objects; the delivery got a 2xx"
    )
    code, out, _ = run(capsys, *cfg, "communities", "status")
    assert "lemmy.example" in out and "sending" in out
    assert "0 confirmed, 0 missing, 0 awaiting lookup, 27 queued" in out
    assert "unverifiable: mbin offers no lookup" in out
