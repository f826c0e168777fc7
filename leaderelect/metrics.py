"""Prometheus metrics for electors (the ``metrics`` extra: ``pip install leaderelect[metrics]``).

.. code-block:: python

    from leaderelect.metrics import instrument
    instrument(elector)          # before elector.start()

Metrics, each labelled with ``election``:

- ``leaderelect_is_leader`` (gauge, 1 while this process leads; ``livesum`` across processes
  in multiprocess mode, so a host's workers add up to 0 or 1)
- ``leaderelect_elections_total`` (counter: terms begun)
- ``leaderelect_demotions_total`` (counter, also labelled ``reason``)
- ``leaderelect_reconnects_total`` (counter: moves to another etcd member or a new channel)
- ``leaderelect_keepalive_seconds`` (histogram: round trip of each successful lease renewal)

gunicorn's multiprocess mode works as prometheus_client documents it: set
``PROMETHEUS_MULTIPROC_DIR`` before the server starts, serve the registry through
``MultiProcessCollector`` and call ``mark_process_dead`` from the ``child_exit`` hook.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

try:
    import prometheus_client
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("leaderelect.metrics needs prometheus_client: pip install 'leaderelect[metrics]'") from err

from leaderelect._forksafe import ForkSafeLock

if TYPE_CHECKING:
    from leaderelect.elector import LeaderElector
    from leaderelect.term import DemotionReason, Term

__all__ = ["Metrics", "instrument"]

KEEPALIVE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(frozen=True)
class Metrics:
    """The metric families; one set per registry and namespace, shared by all electors."""

    is_leader: Any
    elections: Any
    demotions: Any
    reconnects: Any
    keepalive: Any


# Keyed by the registry itself, held weakly: keyed by id(), a registry made after another was
# collected could get the dead one's address, and with it families registered nowhere alive.
_made: weakref.WeakKeyDictionary[Any, dict[str, Metrics]] = weakref.WeakKeyDictionary()
_lock = ForkSafeLock()  # a parent thread may hold it at fork()


def _metrics(registry: Any, namespace: str) -> Metrics:
    with _lock:
        made = _made.setdefault(registry, {})
        if namespace not in made:
            common: dict[str, Any] = {"namespace": namespace, "registry": registry}
            made[namespace] = Metrics(
                is_leader=prometheus_client.Gauge(
                    "is_leader", "1 while this process leads", ["election"], multiprocess_mode="livesum", **common
                ),
                elections=prometheus_client.Counter("elections", "terms begun", ["election"], **common),
                demotions=prometheus_client.Counter("demotions", "terms ended", ["election", "reason"], **common),
                reconnects=prometheus_client.Counter("reconnects", "etcd reconnects", ["election"], **common),
                keepalive=prometheus_client.Histogram(
                    "keepalive_seconds",
                    "round trip of successful lease renewals",
                    ["election"],
                    buckets=KEEPALIVE_BUCKETS,
                    **common,
                ),
            )
        return made[namespace]


def instrument(elector: LeaderElector, registry: Any = None, namespace: str = "leaderelect") -> Metrics:
    """Count *elector*'s terms, demotions, reconnects and renewals in *registry*
    (prometheus_client's default registry unless given). Call it before ``start()``."""
    m = _metrics(prometheus_client.REGISTRY if registry is None else registry, namespace)
    label = elector.name
    m.is_leader.labels(label).set(0)
    m.elections.labels(label)  # export zeros before the first event
    m.reconnects.labels(label)

    def elected(term: Term) -> None:
        m.elections.labels(label).inc()
        m.is_leader.labels(label).set(1)

    def demoted(term: Term, reason: DemotionReason) -> None:
        m.is_leader.labels(label).set(0)
        m.demotions.labels(label, str(reason)).inc()

    def stats(event: str, seconds: float) -> None:
        if event == "keepalive":
            m.keepalive.labels(label).observe(seconds)
        elif event == "reconnect":
            m.reconnects.labels(label).inc()

    elector.on_elected(elected)
    elector.on_demoted(demoted)
    elector.add_stats_hook(stats)  # detached when the elector stops, even on a shared session
    return m
