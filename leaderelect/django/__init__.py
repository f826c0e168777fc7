"""A Django app that runs one elector per process, configured in settings.

.. code-block:: python

    INSTALLED_APPS = [..., "leaderelect.django"]
    LEADERELECT = {
        "NAME": "jobs",                        # the election
        "ENDPOINTS": "10.0.0.1:2379,10.0.0.2:2379",
        "TTL": 10,
        "ON_ELECTED": "myapp.jobs.start",      # dotted paths: fn(term)
        "ON_DEMOTED": "myapp.jobs.stop",       # fn(term, reason)
        "START_IN_WORKERS": False,             # opt in to starting from AppConfig.ready()
        "OPTIONS": {},                         # any other LeaderElector keyword
    }

Two ways to run it:

- ``python manage.py leaderelect``: a dedicated process that campaigns and runs ``ON_ELECTED``
  while it leads, until SIGTERM or SIGINT. Nothing else changes; no web worker holds an elector.
- ``"START_IN_WORKERS": True``: every server process (gunicorn or uWSGI worker, ``runserver``'s
  serving child) starts its own elector from ``AppConfig.ready()``. It never starts for other
  ``manage.py`` commands (migrate, shell, ...) nor in Celery processes (see
  :func:`is_celery_process`); any other process that loads Django (a script that calls
  ``django.setup()``, a pytest-django run) campaigns too. ``ready()`` runs before the server
  forks when gunicorn runs with ``--preload`` or uWSGI without ``--lazy-apps``; there leave
  this False and call :func:`start` from gunicorn's ``post_fork`` hook or uWSGI's
  ``@postfork`` instead.

:func:`get_elector` returns this process's elector (or None), e.g. for
``leaderelect.health.django_view(get_elector)``.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Callable

from leaderelect._forksafe import ForkSafeLock
from leaderelect.elector import LeaderElector
from leaderelect.exceptions import ConfigurationError

__all__ = ["build", "get_elector", "is_celery_process", "is_management_command", "read_settings", "start", "stop"]

_lock = ForkSafeLock()  # a parent thread may hold it at fork()
_current: tuple[int, LeaderElector] | None = None


def read_settings() -> dict[str, Any]:
    """``settings.LEADERELECT``, checked: a clear error for a missing ``NAME`` or an unknown key.

    :raises ConfigurationError: when the settings are unusable.
    """
    from django.conf import settings

    conf = getattr(settings, "LEADERELECT", None)
    if not isinstance(conf, dict) or not conf.get("NAME"):
        raise ConfigurationError('settings.LEADERELECT must be a dict with at least "NAME"')
    known = {"NAME", "ENDPOINTS", "TTL", "VALUE", "ON_ELECTED", "ON_DEMOTED", "START_IN_WORKERS", "OPTIONS"}
    unknown = sorted(set(conf) - known)
    if unknown:
        raise ConfigurationError(f"settings.LEADERELECT has unknown keys {unknown}; known: {sorted(known)}")
    return conf


def _import(path: str) -> Callable[..., Any]:
    module, _, attr = path.rpartition(".")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigurationError(f"settings.LEADERELECT: cannot import {path!r}: {err}") from err
    if not callable(fn):
        raise ConfigurationError(f"settings.LEADERELECT: {path!r} is not callable")
    return fn  # type: ignore[no-any-return]


def build() -> LeaderElector:
    """A new (not started) elector from ``settings.LEADERELECT``."""
    conf = read_settings()
    elector = LeaderElector(
        conf["NAME"], conf.get("VALUE"), endpoints=conf.get("ENDPOINTS"), ttl=conf.get("TTL"), **conf.get("OPTIONS", {})
    )
    if conf.get("ON_ELECTED"):
        elector.on_elected(_import(conf["ON_ELECTED"]))
    if conf.get("ON_DEMOTED"):
        elector.on_demoted(_import(conf["ON_DEMOTED"]))
    return elector


def start() -> LeaderElector:
    """Start this process's elector (once per process; a copy inherited across fork is replaced)."""
    global _current
    with _lock:
        if _current is not None and _current[0] == os.getpid():
            return _current[1]
        elector = build()
        elector.start()
        _current = (os.getpid(), elector)
        return elector


def get_elector() -> LeaderElector | None:
    """This process's elector, or None if it was not started here."""
    current = _current
    return current[1] if current is not None and current[0] == os.getpid() else None


def stop() -> None:
    """Stop this process's elector, if started (resigns first if it leads); idempotent."""
    global _current
    with _lock:
        elector = get_elector()
        _current = None
    if elector is not None:
        elector.stop()


def is_celery_process(argv: list[str] | None = None) -> bool:
    """True in a process that ``celery`` runs (a worker, beat, any of its commands), which
    loads Django too. ``START_IN_WORKERS`` skips these: a worker forks its pool after
    loading Django, and gRPC must not cross a fork; beat has its own leader scheduler."""
    argv = sys.argv if argv is None else argv
    if not argv:
        return False
    path = argv[0]
    prog = os.path.basename(path)
    return prog == "celery" or (prog == "__main__.py" and os.path.basename(os.path.dirname(path)) == "celery")


def is_management_command(argv: list[str] | None = None) -> bool:
    """True when this process runs a ``manage.py`` / ``django-admin`` command other than the
    serving child of ``runserver`` (the autoreloader's parent process counts as a command)."""
    argv = sys.argv if argv is None else argv
    if not argv:
        return False
    prog = os.path.basename(argv[0])
    if prog not in ("manage.py", "django-admin", "django-admin.py", "__main__.py", "-m"):
        return False
    if prog in ("__main__.py", "-m") and "django" not in argv[0]:
        return False
    command = argv[1] if len(argv) > 1 else ""
    if command == "runserver":
        return not (os.environ.get("RUN_MAIN") == "true" or "--noreload" in argv)
    return True
