"""Deterministic simulation of ``leaderelect.core``: a simulated etcd, a simulated world,
seeded schedules and the properties they must keep (``python -m leaderelect.sim``)."""
