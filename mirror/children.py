"""Child processes: started as ``python -m <module>``, talking over stdin and stdout.

Both ends are fedimirror: the parent writes length-prefixed frames (each a
pickle) on the child's stdin, the child answers with frames on
its stdout. Used by the delivery worker's signing processes (the ingest's
partner process is forked and uses only the framing). A child imports
only what its job needs, gets no MIRROR_* variables (the master key may
be one) and exits when its stdin closes, so it never outlives its
parent, even after SIGKILL.
"""

from __future__ import annotations

import os
import signal
import struct
import sys
from typing import BinaryIO

LENGTH = struct.Struct("!I")


def command(module: str) -> list[str]:
    """The command line that runs ``module`` as a child."""
    return [sys.executable, "-m", module]


def environment() -> dict[str, str]:
    """The parent's environment without its MIRROR_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MIRROR_")}


def frame(data: bytes) -> bytes:
    return LENGTH.pack(len(data)) + data


def read_frame(stream: BinaryIO) -> bytes | None:
    """The next frame's payload; None once the other end has closed (or died)."""
    header = stream.read(LENGTH.size)
    if len(header) < LENGTH.size:
        return None
    (length,) = LENGTH.unpack(header)
    data = stream.read(length)
    return data if len(data) == length else None


def child_streams() -> tuple[BinaryIO, BinaryIO]:
    """In the child: its requests, and where its answers go.

    Answers go to a copy of fd 1; anything printed goes to stderr and so
    cannot break the stream. Ctrl-C and systemd's SIGTERM reach the whole
    process group; the parent decides when to stop and closes our stdin.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return sys.stdin.buffer, answers
