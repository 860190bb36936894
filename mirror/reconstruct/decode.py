"""Bytes to text, refusing what is not a UTF-8 text dump (never guessing another encoding)."""

from __future__ import annotations

import re

from mirror.reconstruct.detect import NotADump

_CONTROL = re.compile(r"[\x01-\x08\x0b\x0e-\x1f\x7f]")

_BOM = b"\xef\xbb\xbf"


def decode(data: bytes) -> str:
    """The text of a dump file, or NotADump naming the first bad byte."""
    if not data:
        raise NotADump("empty file")
    nul = data.find(b"\x00")
    if nul != -1:
        raise NotADump(f"binary file (NUL byte at offset {nul})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotADump(
            f"not UTF-8: invalid byte 0x{data[exc.start]:02x} at offset {exc.start}"
        ) from None
    if data.startswith(_BOM):
        text = text[1:]
    if not text.strip():
        raise NotADump("empty file (only whitespace)")
    controls = len(_CONTROL.findall(text, 0, 65536))
    if controls > 8:
        raise NotADump(f"binary file ({controls} control characters in the first 64 KiB)")
    return text
