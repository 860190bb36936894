"""Settings: defaults, then the TOML file, then the environment.

Loaded once by the CLI and passed down; there is no settings singleton.
``mirror/mirror.example.toml`` documents every option (a test keeps this
module and that file in step).

Environment variables override single keys: ``MIRROR_<SECTION>__<KEY>``
for any key, plus a few shortcuts for the ones operators set most often.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mirror.errors import ConfigError

ENV_PREFIX = "MIRROR_"
ENV_CONFIG = "MIRROR_CONFIG"
DEFAULT_CONFIG_NAME = "mirror.toml"

#: Environment shortcuts: variable -> (section, key).
ENV_SHORTCUTS: dict[str, tuple[str, str]] = {
    "MIRROR_DATABASE_URL": ("database", "url"),
    "MIRROR_ALLOW_PRIVATE_NETWORKS": ("network", "allow_private_networks"),
    "MIRROR_ADMIN_TOKEN": ("admin", "token"),
    "MIRROR_METRICS_TOKEN": ("metrics", "token"),
    "MIRROR_DATA_DIR": ("paths", "data_dir"),
}

#: MIRROR_* variables that are not config keys (read elsewhere).
ENV_RESERVED = frozenset({ENV_CONFIG, "MIRROR_MASTER_KEY"})


@dataclass(frozen=True, slots=True)
class InstanceSettings:
    base_url: str = ""
    username: str = "mirror"
    display_name: str = "Lemmy archive mirror"
    summary: str = ""
    operator: str = ""
    icon_url: str = ""


@dataclass(frozen=True, slots=True)
class ServerSettings:
    listen: str = "127.0.0.1:8080"
    trusted_proxies: list[str] = field(default_factory=list)
    #: PEM files for `serve` to speak https itself (both or neither).
    tls_cert: str = ""
    tls_key: str = ""

    def check_tls(self, base_url: str) -> None:
        """Both PEM files or neither, each readable, and an https base URL when set."""
        given = [key for key in ("tls_cert", "tls_key") if getattr(self, key)]
        if len(given) == 1:
            other = "tls_key" if given == ["tls_cert"] else "tls_cert"
            raise ConfigError(
                f"[server].{given[0]} is set but [server].{other} is not: "
                "give both PEM files or neither"
            )
        if not given:
            return
        for key in ("tls_cert", "tls_key"):
            path = Path(getattr(self, key)).expanduser()
            try:
                with path.open("rb"):
                    pass
            except OSError as exc:
                raise ConfigError(f"[server].{key}: {path}: {exc.strerror}") from None
        if base_url and not base_url.startswith("https://"):
            # The service would hand out http:// ids while only answering https.
            raise ConfigError(
                f"[server].tls_cert is set, so serve speaks https, but [instance].base_url "
                f"is {base_url!r}: make it https://"
            )


@dataclass(frozen=True, slots=True)
class FederationSettings:
    authorized_fetch: bool = False
    signature_window_s: int = 3600
    inbox_max_bytes: int = 1048576
    followers_visible: bool = False
    fetch_timeout_s: float = 10.0
    fetch_max_bytes: int = 1048576
    actor_cache_s: int = 86400
    allow_hosts: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    concurrency: int = 16
    per_host_concurrency: int = 2
    per_host_interval_ms: int = 0
    connect_timeout_s: float = 10.0
    total_timeout_s: float = 30.0
    lease_s: int = 120
    retry_horizon_s: int = 259200
    backoff_base_s: float = 30.0
    backoff_max_s: float = 21600.0
    unknown_error_retries: int = 3
    breaker_failures: int = 5
    breaker_cooloff_s: int = 60
    dead_after_s: int = 259200
    retention_days: int = 14
    poll_interval_s: float = 1.0
    sign_processes: int = 2


@dataclass(frozen=True, slots=True)
class PathsSettings:
    data_dir: str = ""
    master_key_file: str = ""


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    url: str = ""
    echo: bool = False


@dataclass(frozen=True, slots=True)
class NetworkSettings:
    allow_private_networks: bool = False


@dataclass(frozen=True, slots=True)
class AdminSettings:
    token: str = ""


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    enabled: bool = True
    token: str = ""
    listen: str = ""


#: The allowed values of [backfill]'s string options.
BACKFILL_CHOICES = {
    "attribution": ("bot", "puppets"),
    "post_type": ("auto", "Note", "Page"),
    "published": ("original", "now"),
    "unknown_post_comments": ("followers", "skip"),
}


@dataclass(frozen=True, slots=True)
class BackfillSettings:
    attribution: str = "bot"
    post_type: str = "auto"
    rate_per_minute: float = 4.0
    published: str = "original"
    unknown_post_comments: str = "followers"
    exclude_authors: list[str] = field(default_factory=list)
    exclude_communities: list[str] = field(default_factory=list)
    exclude_items: list[str] = field(default_factory=list)

    def check(self) -> None:
        for key, allowed in BACKFILL_CHOICES.items():
            value = getattr(self, key)
            if value not in allowed:
                raise ConfigError(
                    f"[backfill].{key} must be one of {', '.join(allowed)}, got {value!r}"
                )


@dataclass(frozen=True, slots=True)
class ConfirmSettings:
    rate: float = 2.0
    window_s: float = 600.0


@dataclass(frozen=True, slots=True)
class HostedDefaultsSettings:
    #: Posts a minute of the backlog a newly subscribing server gets (0: unpaced);
    #: each post's comments follow it.
    backlog_rate: float = 6.0


@dataclass(frozen=True, slots=True)
class HostedEntry:
    """One ``[[hosted]]`` table: a community to host (mirror.federation.communities)."""

    source: str
    name: str = ""
    title: str = ""


@dataclass(frozen=True, slots=True)
class Settings:
    instance: InstanceSettings = field(default_factory=InstanceSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    federation: FederationSettings = field(default_factory=FederationSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    paths: PathsSettings = field(default_factory=PathsSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    network: NetworkSettings = field(default_factory=NetworkSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    backfill: BackfillSettings = field(default_factory=BackfillSettings)
    confirm: ConfirmSettings = field(default_factory=ConfirmSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    hosted_defaults: HostedDefaultsSettings = field(default_factory=HostedDefaultsSettings)
    #: The ``[[hosted]]`` tables, applied when the service starts.
    hosted: tuple[HostedEntry, ...] = ()
    #: The file the settings came from, if any.
    source: Path | None = None

    @property
    def data_dir(self) -> Path:
        if self.paths.data_dir:
            return Path(self.paths.data_dir).expanduser()
        base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
        return Path(base) / "fedimirror"

    @property
    def master_key_path(self) -> Path:
        if self.paths.master_key_file:
            return Path(self.paths.master_key_file).expanduser()
        return self.data_dir / "master.key"

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{self.data_dir / 'mirror.db'}"


SECTIONS: dict[str, type] = {
    f.name: f.type if isinstance(f.type, type) else globals()[str(f.type)]
    for f in fields(Settings)
    if f.name not in ("source", "hosted")
}


def find_config_file(explicit: str | Path | None, env: Mapping[str, str]) -> Path | None:
    """Return the config file to read: ``--config``, ``$MIRROR_CONFIG``, ``./mirror.toml``.

    A file named explicitly must exist; the fallback in the working directory
    is optional.
    """
    named = explicit if explicit is not None else env.get(ENV_CONFIG) or None
    if named is not None:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        return path
    fallback = Path(DEFAULT_CONFIG_NAME)
    return fallback if fallback.is_file() else None


def where_config_was_looked_for() -> str:
    """Where :func:`find_config_file` looked when it found none (one named must exist)."""
    here = Path.cwd() / DEFAULT_CONFIG_NAME
    return f"neither --config nor ${ENV_CONFIG} names one, and there is no {here}"


def load_settings(
    explicit: str | Path | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Build the effective settings: environment beats file beats default."""
    env = os.environ if env is None else env
    path = find_config_file(explicit, env)
    values: dict[str, dict[str, Any]] = {}
    if path is not None:
        values = _read_toml(path)
    for (section, key), raw, origin in _env_overrides(env):
        values.setdefault(section, {})[key] = _coerce_env(section, key, raw, origin)
    settings = _build(values, path)
    settings.server.check_tls(settings.instance.base_url)
    return settings


def _read_toml(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: config file is not UTF-8 (byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    if "hosted" in data:
        data["hosted"] = _hosted_entries(data["hosted"], str(path))
    for section, table in data.items():
        if section == "hosted":
            continue
        if section not in SECTIONS:
            raise ConfigError(f"{path}: unknown section [{section}]")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        for key, value in table.items():
            _check_type(section, key, value, str(path))
    return data


def _hosted_entries(value: Any, origin: str) -> tuple[HostedEntry, ...]:
    """The ``[[hosted]]`` tables, each checked: a source, and optional name and title."""
    if not isinstance(value, list):
        raise ConfigError(f"{origin}: hosted must be [[hosted]] tables, one per community")
    entries = []
    keys = {f.name for f in fields(HostedEntry)}
    for number, table in enumerate(value, start=1):
        where = f"{origin}: [[hosted]] #{number}"
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table")
        unknown = sorted(set(table) - keys)
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r} (source, name, title)")
        for key, item in table.items():
            if not isinstance(item, str):
                raise ConfigError(f"{where}: {key} must be a string, got {item!r}")
        if not table.get("source", "").strip():
            raise ConfigError(f"{where}: source is required (name@instance, a title, or unknown)")
        entries.append(HostedEntry(**table))
    return tuple(entries)


def _env_overrides(env: Mapping[str, str]) -> list[tuple[tuple[str, str], str, str]]:
    found = []
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name in ENV_RESERVED:
            continue
        if name in ENV_SHORTCUTS:
            found.append((ENV_SHORTCUTS[name], raw, name))
        elif "__" in name:
            section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
            found.append(((section, key), raw, name))
    # Shortcuts are applied after the long form, so they win when both are set.
    found.sort(key=lambda item: item[2] in ENV_SHORTCUTS)
    return found


def _default(section: str, key: str, origin: str) -> Any:
    cls = SECTIONS.get(section)
    if cls is None:
        raise ConfigError(f"{origin}: unknown config section [{section}]")
    for f in fields(cls):
        if f.name == key:
            return f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
    raise ConfigError(f"{origin}: unknown config key [{section}].{key}")


def _check_type(section: str, key: str, value: Any, origin: str) -> None:
    default = _default(section, key, origin)
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        _check_range(section, key, value, origin)
        return
    if type(value) is not expected:
        raise ConfigError(
            f"{origin}: [{section}].{key} must be {_type_word(expected)}, got {value!r}"
        )
    _check_range(section, key, value, origin)
    _check_entries(section, key, value, origin)


#: Numbers where 0 would stop the service quietly (no requests, a busy loop,
#: instant timeouts). Every other number may be 0 (none, unpaced, at once).
AT_LEAST_ONE = frozenset(
    {
        ("delivery", "concurrency"),
        ("delivery", "per_host_concurrency"),
        ("delivery", "sign_processes"),
        ("delivery", "lease_s"),
        ("delivery", "connect_timeout_s"),
        ("delivery", "total_timeout_s"),
        ("delivery", "poll_interval_s"),
        ("delivery", "breaker_failures"),
        ("federation", "fetch_timeout_s"),
        ("federation", "inbox_max_bytes"),
        ("federation", "fetch_max_bytes"),
    }
)


def _check_range(section: str, key: str, value: Any, origin: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if (section, key) in AT_LEAST_ONE and value <= 0:
        raise ConfigError(f"{origin}: [{section}].{key} must be more than 0, got {value!r}")
    if value < 0:
        raise ConfigError(f"{origin}: [{section}].{key} must not be negative, got {value!r}")


def _coerce_env(section: str, key: str, raw: str, origin: str) -> Any:
    expected = type(_default(section, key, origin))
    if expected is bool:
        if raw not in ("true", "false"):
            raise ConfigError(f"{origin}: must be true or false, got {raw!r}")
        return raw == "true"
    if expected in (int, float):
        try:
            value = expected(raw)
        except ValueError:
            raise ConfigError(f"{origin}: must be {_type_word(expected)}, got {raw!r}") from None
        _check_range(section, key, value, origin)
        return value
    if expected is list:
        items = [item.strip() for item in raw.split(",") if item.strip()]
        _check_entries(section, key, items, origin)
        return items
    return raw


def _check_entries(section: str, key: str, value: Any, origin: str) -> None:
    if (section, key) != ("federation", "allow_hosts"):
        return
    for entry in value:
        try:
            parse_host_port(entry)
        except ValueError as exc:
            raise ConfigError(f"{origin}: [{section}].{key}: {exc}") from None


def parse_host_port(entry: Any) -> tuple[str, int]:
    """(host, port) of an allow_hosts entry, HOST:PORT ([ADDRESS]:PORT for IPv6).

    The host is lower-cased and an IPv6 address loses its brackets, as the
    guard compares them; ValueError says what is wrong with the entry.
    """
    if not isinstance(entry, str):
        raise ValueError(f"{entry!r} is not a string")
    host, colon, port = entry.strip().rpartition(":")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(f"{entry!r} is not HOST:PORT (an IPv6 address is [ADDRESS]:PORT)")
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{entry!r} is not HOST:PORT (write an IPv6 address as [ADDRESS]:PORT)")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{entry!r} is not HOST:PORT (e.g. 127.0.0.1:8790)")
    if any(c.isspace() or c in "/@?#" for c in host):
        raise ValueError(f"{entry!r}: {host!r} is not a host name or address")
    return host.lower(), int(port)


def _type_word(expected: type) -> str:
    return {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
    }.get(expected, expected.__name__)


def _build(values: dict[str, dict[str, Any]], path: Path | None) -> Settings:
    settings = Settings(source=path, hosted=values.pop("hosted", ()))  # type: ignore[arg-type]
    for section, table in values.items():
        current = getattr(settings, section)
        settings = replace(settings, **{section: replace(current, **table)})
    return settings


def iter_options(settings: Settings) -> list[tuple[str, str, Any]]:
    """Every option as (section, key, value), in declaration order."""
    out = []
    for section in SECTIONS:
        group = getattr(settings, section)
        for f in fields(group):
            out.append((section, f.name, getattr(group, f.name)))
    return out
