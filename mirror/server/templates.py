"""Server-rendered HTML (Jinja2, autoescaped): the landing, profile and object pages."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2
from aiohttp import web


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("mirror.server", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, *, status: int = 200, **context: Any) -> web.Response:
    html = environment().get_template(template).render(**context)
    response = web.Response(text=html, content_type="text/html", status=status)
    response.headers["Vary"] = "Accept"
    return response
