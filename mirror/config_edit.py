"""Editing the config file in place: one list option gains an entry.

The file is the operator's: its comments, order and layout stay as they
were; only the option's own line changes (or is added to its section).
The result is read back before it replaces the file, and must differ from
the original in that option alone; anything this cannot edit that way is
refused with a line saying to edit it by hand. The file keeps its mode
(`mirror init` writes it 0600: it holds tokens).
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from mirror.errors import ConfigError

HEADER = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")


def add_to_list(path: Path, section: str, key: str, entry: str) -> bool:
    """Add ``entry`` to the list ``[section].key`` of the config at ``path``.

    False when it is there already (the file is left alone).
    """
    path = path.resolve()  # a symlinked config is edited where it lives
    try:
        text = path.read_text(encoding="utf-8")
        before = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config to edit it ({exc})") from None
    current = before.get(section, {}).get(key, [])
    if not isinstance(current, list):
        raise ConfigError(f"{path}: [{section}].{key} must be a list, got {current!r}")
    if entry in current:
        return False
    values = [*current, entry]
    edited = _with_line(text, section, key, f"{key} = {json.dumps(values)}")
    expected = _with_value(before, section, key, values)
    try:
        after = tomllib.loads(edited)
    except tomllib.TOMLDecodeError:
        after = None
    if after != expected:
        raise ConfigError(
            f"{path}: cannot edit [{section}].{key} in this file's layout; "
            f"add {json.dumps(entry)} to it by hand"
        )
    _replace(path, edited)
    return True


def _with_value(data: dict[str, Any], section: str, key: str, value: Any) -> dict[str, Any]:
    return {**data, section: {**data.get(section, {}), key: value}}


def _with_line(text: str, section: str, key: str, line: str) -> str:
    """``text`` with the key's lines replaced by ``line``, or ``line`` added to the section."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    start = _section_start(lines, section)
    if start is None:
        return "".join(lines) + f"\n[{section}]\n{line}\n"
    end = _section_end(lines, start)
    assignment = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for n in range(start + 1, end):
        if assignment.match(lines[n]):
            # The value may span lines (a list written one entry a line).
            last = n
            while last < end and not _parses("".join(lines[n : last + 1])):
                last += 1
            return "".join([*lines[:n], line + "\n", *lines[last + 1 :]])
    # After the section's last setting, before the comments that open the next.
    at = end
    while at > start + 1 and (not lines[at - 1].strip() or lines[at - 1].lstrip().startswith("#")):
        at -= 1
    return "".join([*lines[:at], line + "\n", *lines[at:]])


def _section_start(lines: list[str], section: str) -> int | None:
    for n, text in enumerate(lines):
        match = HEADER.match(text)
        if match and match.group(1).strip() == section:
            return n
    return None


def _section_end(lines: list[str], start: int) -> int:
    for n in range(start + 1, len(lines)):
        if HEADER.match(lines[n]) or lines[n].lstrip().startswith("[["):
            return n
    return len(lines)


def _parses(text: str) -> bool:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return True


def _replace(path: Path, text: str) -> None:
    """Write ``text`` over ``path`` at once (a crash leaves the old file), keeping its mode."""
    mode = stat.S_IMODE(path.stat().st_mode)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), mode)
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
