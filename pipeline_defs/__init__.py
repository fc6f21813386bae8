"""Wiring: Definitions, environments, jobs (the only package that assembles Dagster objects)."""
