"""Observing the service: Prometheus metrics and structured logs."""
