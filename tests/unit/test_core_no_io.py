"""The core does no I/O: it imports, and runs a whole simulated schedule, with sockets,
threads, clocks, subprocesses and every other leaderelect module blocked."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED = ("socket", "ssl", "threading", "_thread", "time", "select", "selectors", "asyncio", "subprocess", "grpc")

PROBE = textwrap.dedent(
    """
    import importlib, sys
    import leaderelect  # the package's own imports (gRPC, threads) are not the core's
    for name in [m for m in sys.modules if m.startswith(("leaderelect.core", "leaderelect.sim"))]:
        del sys.modules[name]
    blocked = %r + tuple(m for m in sys.modules if m.startswith("leaderelect.") and m != "leaderelect")
    saved = {name: sys.modules.get(name) for name in blocked}
    for name in blocked:
        sys.modules[name] = None  # importing it now raises ImportError
        if name.count(".") == 1 and name.startswith("leaderelect."):
            # else "from leaderelect import x" finds the attribute and never asks sys.modules
            delattr(leaderelect, name.split(".")[1])
    for module in ("leaderelect.core", "leaderelect.core.elector", "leaderelect.core.lease",
                   "leaderelect.core.follow", "leaderelect.core.queue", "leaderelect.core.messages",
                   "leaderelect.sim.world", "leaderelect.sim.check", "leaderelect.sim.plan"):
        importlib.import_module(module)
    from leaderelect.sim.check import violations
    from leaderelect.sim.plan import draw
    from leaderelect.sim.world import World
    world = World(draw(7))
    world.simulate()
    assert not violations(world) and world.terms
    print("core ran with", len(blocked), "modules blocked")
    %s
    sys.modules.update(saved)  # for the interpreter's own shutdown
    """
)


def test_the_core_imports_and_runs_with_io_blocked() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE % (BLOCKED, "")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "core ran with" in result.stdout


def test_the_probe_can_fail() -> None:
    """Negative control: code that reaches for the clock, or another leaderelect module, is caught."""
    for leak in ("import time", "from leaderelect import _clock"):
        result = subprocess.run(
            [sys.executable, "-c", PROBE % (BLOCKED, leak)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode != 0 and "halted; None in sys.modules" in result.stderr, result.stderr
