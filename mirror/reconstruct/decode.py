"""Bytes to text, refusing what is not a UTF-8 text dump (never guessing another encoding)."""

from __future__ import annotations

from mirror.reconstruct.detect import NotADump

_CONTROL_BYTES = bytes([*range(0x01, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F])

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
    if not text or text.isspace():  # not text.strip(), which copies the whole text
        raise NotADump("empty file (only whitespace)")
    # Counted on the bytes (control characters are single bytes in UTF-8):
    # bytes.translate is many times faster than a regex over the text.
    head = data[:65536]
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    if controls > 8:
        raise NotADump(f"binary file ({controls} control characters in the first 64 KiB)")
    return text
