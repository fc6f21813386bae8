"""Test tooling shipped with the package, shared by tests and benchmarks (stdlib only, no dagster).

* :mod:`tidelake.testing.faultproxy`: :class:`FaultProxy`, an HTTP reverse proxy that injects S3
  faults (``503 SlowDown``, connection resets, lost responses, latency) in front of a real S3 API.
"""

from tidelake.testing.faultproxy import FaultKind, FaultProxy, FaultRule, ProxyStats, RequestRecord

__all__ = ["FaultKind", "FaultProxy", "FaultRule", "ProxyStats", "RequestRecord"]
