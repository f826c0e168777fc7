"""A Jepsen-style harness for leaderelect: contender processes, a nemesis, a checker.

Reusable for your own settings: run contenders with your ttl and guard against your
faults, then check the histories (``python -m leaderelect.chaos --help``).
"""
