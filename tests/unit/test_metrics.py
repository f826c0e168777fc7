"""instrument() without etcd: which registry the metric families land in."""

from __future__ import annotations

import gc

import prometheus_client

from leaderelect import LeaderElector
from leaderelect.metrics import instrument


def test_each_new_registry_gets_its_own_metrics_even_at_a_reused_address() -> None:
    """The families were cached by id(registry): a registry made after another was collected
    often has the same address, and got the dead registry's families, so it stayed empty."""
    elector = LeaderElector("metrics-unit", endpoints="127.0.0.1:1")  # never started
    for round_ in range(50):
        registry = prometheus_client.CollectorRegistry()
        instrument(elector, registry)
        exported = registry.get_sample_value("leaderelect_elections_total", {"election": "metrics-unit"})
        assert exported == 0.0, f"round {round_}: the new registry exports nothing"
        del registry
        gc.collect()
