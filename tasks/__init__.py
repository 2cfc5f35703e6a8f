"""Thin Prefect task wrappers over the plain functions of payer_scoring/ and models/."""
