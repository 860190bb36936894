"""TLS for `mirror serve` itself, from [server].tls_cert and [server].tls_key.

For small setups and for peers that only speak https (PieFed builds
https:// WebFinger URLs); a reverse proxy in front remains the usual way.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from mirror.config import Settings
from mirror.errors import ConfigError


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The listener's TLS context, or None when serve speaks plain http."""
    server = settings.server
    server.check_tls(settings.instance.base_url)
    if not server.tls_cert:
        return None
    cert = Path(server.tls_cert).expanduser()
    key = Path(server.tls_key).expanduser()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"[server].tls_cert {cert} with tls_key {key}: "
            f"not a PEM certificate and its key ({exc})"
        ) from None
    return context
