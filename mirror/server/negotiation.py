"""Content negotiation and response helpers: one place decides JSON or HTML."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from mirror.vocab.context import ACTIVITY_JSON


def wants_html(request: web.Request) -> bool:
    """True when a browser asks: text/html preferred over any JSON type."""
    accept = request.headers.get("Accept", "")
    best_html = best_json = -1.0
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        media = media.strip().lower()
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media in ("text/html", "application/xhtml+xml"):
            best_html = max(best_html, quality)
        elif media in ("application/activity+json", "application/ld+json", "application/json"):
            best_json = max(best_json, quality)
    return best_html > 0 and best_html >= best_json and best_json < 1.0


def activity_json(document: dict[str, Any], *, status: int = 200) -> web.Response:
    """JSON with Content-Type exactly application/activity+json (Lemmy compares strings)."""
    response = web.Response(body=json.dumps(document, ensure_ascii=False).encode(), status=status)
    response.headers["Content-Type"] = ACTIVITY_JSON
    response.headers["Vary"] = "Accept"
    return response


def plain_json(document: dict[str, Any], *, content_type: str, status: int = 200) -> web.Response:
    response = web.Response(body=json.dumps(document).encode(), status=status)
    response.headers["Content-Type"] = content_type
    return response
