"""Tier workers: serve one configured tier (small, large, ...) over NATS through a backend."""
