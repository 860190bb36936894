"""The service fixtures of the server tests, for backfills through a running service."""

from tests.server.conftest import peer, sandbox_factory, service_factory

__all__ = ["peer", "sandbox_factory", "service_factory"]
