"""The service fixtures of the server tests, for backfills through a running service."""

from tests.server.conftest import service_factory

__all__ = ["service_factory"]
