"""The event simulator: believable shop, app and sensor traffic for every contract topic.

``EventSimulator`` plans messages (pure, seeded, no Kafka); ``run_simulation`` sends them with a
``confluent_kafka.Producer`` and appends each acknowledged message to the producer ledger;
``tidelake simulate`` (tidelake.cli.simulate) is its command line.
"""

from __future__ import annotations

from tidelake.simulator.config import MALFORMED_REASONS, SimulatorConfig
from tidelake.simulator.generator import (
    EventSimulator,
    PlannedMessage,
    generate_messages,
    random_uuid4,
)
from tidelake.simulator.runner import (
    LedgerWriter,
    Producer,
    SimulationSummary,
    build_producer,
    producer_config,
    run_simulation,
)

__all__ = [
    "MALFORMED_REASONS",
    "EventSimulator",
    "LedgerWriter",
    "PlannedMessage",
    "Producer",
    "SimulationSummary",
    "SimulatorConfig",
    "build_producer",
    "generate_messages",
    "producer_config",
    "random_uuid4",
    "run_simulation",
]
