"""The ``mirror`` command: parses arguments and runs a command's handler.

Exit codes: 0 success, 1 a runtime failure or a refused input file,
2 a usage or configuration error.

The arguments are declared in parser.py; the handlers, by area, in ingest.py,
service.py, delivery.py, backfill.py and communities.py; what they share in wiring.py.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError

from mirror.cli.parser import build_parser
from mirror.cli.wiring import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError
from mirror.config import Settings, load_settings, where_config_was_looked_for
from mirror.errors import ConfigError, MirrorError

log = logging.getLogger("mirror")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # A daemon reports what it does; one-shot commands only what goes wrong.
    _setup_logging(
        args.verbose + (1 if args.command in ("serve", "worker", "sandbox") else 0),
        args.log_format,
    )
    # What the commands create holds or locks private state (the config and its
    # tokens, the database and its WAL, the master key, lock files): readable
    # by its owner only, whatever umask the shell had (the systemd unit sets
    # the same, UMask=0077).
    umask = os.umask(0o077)
    try:
        # `init` writes the config file, so it cannot read it first.
        settings = load_settings(args.config) if args.command != "init" else Settings()
        if settings.source is None and args.command not in WITHOUT_CONFIG:
            _say_no_config_file(settings)
        return int(args.handler(args, settings))
    except (ConfigError, UsageError) as exc:
        print(f"mirror: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MirrorError as exc:
        print(f"mirror: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except SQLAlchemyError as exc:
        log.debug("database error", exc_info=True)
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"mirror: error: database: {reason}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`mirror inspect | head`): not an error.
        sys.stdout = None  # type: ignore[assignment]
        return EXIT_OK
    finally:
        os.umask(umask)


#: Commands that read no config file: `init` writes it, the sandbox and the
#: demo run on their own throwaway state.
WITHOUT_CONFIG = frozenset({"init", "sandbox", "demo"})


def _say_no_config_file(settings: Settings) -> None:
    """One line, since defaults quietly share the data directory's database:
    from another folder, a command would run on that one instead of the config's."""
    from sqlalchemy.engine import make_url

    database = make_url(settings.database_url).render_as_string(hide_password=True)
    print(
        f"mirror: no config file ({where_config_was_looked_for()}): defaults, database {database}",
        file=sys.stderr,
    )


def _setup_logging(verbosity: int, fmt: str = "text") -> None:
    from mirror.observe.logs import setup_logging

    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    setup_logging(level, fmt)
