"""Prefect flows, one per deployment."""
