"""Logging: readable text on a terminal, one JSON object per line for collectors.

Log calls pass structured fields in ``extra`` (host, status, duration_ms,
attempt...); the JSON format keeps them as keys, the text format shows the
message, which already says the same in words.

Much of what we log comes from peers (activity ids, types, URLs, header
values), so both formats escape control characters in every logged value:
a newline in an activity id must not start a line that reads like one of
ours. The text format escapes the whole message, and indents a traceback's
lines, so that a record's first line is the only one that starts with a
level; the JSON format escapes each string value (json.dumps alone would
leave U+2028, U+0085 and other line breaks some readers split on).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

#: LogRecord attributes that are not structured fields.
STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

#: C0 and C1 controls, DEL, the Unicode line and paragraph separators, the
#: bidirectional overrides and isolates (which can make a line read
#: differently from what it holds), and lone surrogates (which the stream's
#: UTF-8 encoder would refuse, losing the whole record).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """``text`` with control characters written as escapes (``\\n``, ``\\x1b``, ``\\u2028``)."""
    return _CONTROL.sub(_escape_char, text) if _CONTROL.search(text) else text


def _message(record: logging.LogRecord) -> str:
    try:
        return escape(record.getMessage())
    except Exception:  # a bad format string is ours, but it must not lose the record
        return escape(f"{record.msg!r} % {record.args!r}")


class TextFormatter(logging.Formatter):
    """``LEVEL logger: message``, the message escaped, a traceback indented below it."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.message = _message(record)
        text = self.formatMessage(record)
        extra = []
        if record.exc_info:
            extra.append(self.formatException(record.exc_info))
        if record.stack_info:
            extra.append(self.formatStack(record.stack_info))
        for block in extra:
            # Escaped per line: the lines are the traceback's, their content may be a peer's.
            text += "".join("\n    " + escape(line) for line in block.splitlines())
        return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _message(record),
        }
        for key, value in vars(record).items():
            if key not in STANDARD and not key.startswith("_"):
                entry[escape(str(key))] = escape(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = escape(self.formatException(record.exc_info))
        return json.dumps(entry, default=lambda value: escape(str(value)), ensure_ascii=False)


class MalformedRequests(logging.Filter):
    """aiohttp's report of a request its parser refused: a warning line, not an error.

    aiohttp logs every request it cannot parse (a bad request line, an
    oversized header, a bad chunk) with ``logger.exception``, an ERROR with a
    traceback; it answers 400 itself. That is the client's mistake, so it
    becomes one WARNING line naming it. Errors of our own code keep their
    traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            said, reason = record.getMessage(), str(error.message)
            if len(reason) > 200:  # a line of 8 KiB it refused is not worth logging whole
                reason = reason[:200] + "..."
            record.msg, record.args = "%s: %s %s", (said, type(error).__name__, reason)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


def quiet_malformed_requests() -> None:
    """Install MalformedRequests on aiohttp's server logger (once)."""
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequests) for f in server.filters):
        server.addFilter(MalformedRequests())


def setup_logging(level: int, fmt: str = "text") -> None:
    """``fmt``: text (for people) or json (for log collectors)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_malformed_requests()
    # aiohttp's access log duplicates what our own lines say, and alembic's
    # "Context impl SQLiteImpl" lines open every command at -v; keep both for -vv.
    for noisy in ("aiohttp.access", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(
            max(level, logging.WARNING) if level > logging.DEBUG else level
        )
