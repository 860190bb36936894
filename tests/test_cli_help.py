"""`mirror --help` and each command's: the operator's order, descriptions, options explained."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from mirror.cli import main
from mirror.cli.parser import build_parser


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every parser under ``mirror``, with its command line (e.g. ``followers list``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield " ".join((*path, name)), sub
                yield from _commands(sub, (*path, name))


def test_every_command_has_a_description_and_every_option_a_help_text() -> None:
    parser = build_parser()
    walked = dict(_commands(parser))
    assert {"init", "backfill", "followers list", "db upgrade", "hosts revive"} <= set(walked)
    problems = []
    for name, sub in [("mirror", parser), *walked.items()]:
        description = sub.description or ""
        if not description.strip() or "\n" in description.strip():
            problems.append(f"{name}: no one-line description")
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
                continue
            label = f"{name} {'/'.join(action.option_strings) or action.metavar or action.dest}"
            if not action.help:
                problems.append(f"{label}: no help text")
            elif action.default not in (None, False, 0, argparse.SUPPRESS) and (
                "default" not in action.help
            ):
                problems.append(f"{label}: its help does not say its default {action.default!r}")
    assert problems == []


def test_mirror_help_lists_the_commands_in_the_operators_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = [
        line.split()[0]
        for line in capsys.readouterr()
        .out.split("COMMAND\n", 1)[1]
        .split("\noptions:")[0]
        .splitlines()
        if line.startswith("    ") and not line.startswith("     ")
    ]
    path = ["init", "ingest", "inspect", "serve", "backfill", "runs", "status"]
    assert listed[: len(path)] == path
    top = [name for name, _ in _commands(build_parser()) if " " not in name]
    assert sorted(listed) == sorted(top)  # each command, once


def test_init_help_shows_where_it_writes_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["init", "--help"])
    out = capsys.readouterr().out
    assert out.split("\n\n")[1] == "write a config, create the database and the bot's key"
    assert "--config PATH" in out and "./mirror.toml" in out
