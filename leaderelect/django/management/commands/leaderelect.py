"""``python manage.py leaderelect``: a dedicated process that leads or waits, until stopped."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Campaign in the election of settings.LEADERELECT and run its ON_ELECTED callback while "
        "leading; SIGTERM or SIGINT resigns and exits."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        from leaderelect import django as le

        done = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: done.set())
        elector = le.build()

        @elector.on_elected
        def say_elected(term: Any) -> None:
            self.stdout.write(f"leaderelect: elected in {elector.name!r}, token {term.token}")
            self.stdout.flush()

        @elector.on_demoted
        def say_demoted(term: Any, reason: Any) -> None:
            self.stdout.write(f"leaderelect: demoted in {elector.name!r}: {reason}")
            self.stdout.flush()

        with elector:
            self.stdout.write(f"leaderelect: campaigning in {elector.name!r} as {elector.value!r}")
            self.stdout.flush()
            while not done.wait(1.0):
                pass
