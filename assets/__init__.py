"""Dagster assets by layer (bronze/, silver/, gold/); checks sit beside their asset."""
