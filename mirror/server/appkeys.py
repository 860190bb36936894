"""Typed keys for what the application holds (aiohttp AppKeys, not string keys)."""

from __future__ import annotations

from aiohttp import web

from mirror.federation.service import Federation

FEDERATION = web.AppKey("federation", Federation)
