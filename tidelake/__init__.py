"""Tidelake engine: contracts, simulator, exactly-once ingest, reconciliation, dev stack.

Importable without Dagster: the CLI, the API, the benchmarks, the tests and the Dagster assets all
call these same functions.
"""

__version__ = "0.1.0"
