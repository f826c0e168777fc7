"""The Django app config; its ``ready()`` starts the elector only when opted in."""

from __future__ import annotations

import atexit
import logging

from django.apps import AppConfig

log = logging.getLogger(__name__)


class LeaderelectConfig(AppConfig):
    name = "leaderelect.django"
    label = "leaderelect"
    verbose_name = "leaderelect"

    def ready(self) -> None:
        from leaderelect import django as le

        conf = le.read_settings()  # a bad configuration fails at startup, in every process
        if not conf.get("START_IN_WORKERS") or le.is_management_command():
            return
        if le.is_celery_process():
            log.info("leaderelect: START_IN_WORKERS does not start an elector in a Celery process")
            return
        elector = le.start()
        atexit.register(le.stop)
        log.info("leaderelect: elector %r started in this server process", elector.name)
