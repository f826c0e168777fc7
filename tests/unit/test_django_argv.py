"""Which processes the Django app's opt-in start counts as servers (pure logic on argv)."""

from __future__ import annotations

import pytest

pytest.importorskip("django")

from leaderelect.django import is_celery_process, is_management_command


@pytest.mark.parametrize(
    ("argv", "run_main", "command"),
    [
        (["manage.py", "migrate"], None, True),
        (["/srv/app/manage.py", "shell", "-c", "x"], None, True),
        (["django-admin", "check"], None, True),
        (["/usr/lib/python3/site-packages/django/__main__.py", "migrate"], None, True),
        (["manage.py", "runserver"], None, True),  # the autoreloader's parent process
        (["manage.py", "runserver"], "true", False),  # its serving child
        (["manage.py", "runserver", "--noreload"], None, False),
        (["/venv/bin/gunicorn", "-w", "2", "mysite.wsgi"], None, False),
        (["uwsgi", "--ini", "uwsgi.ini"], None, False),
        (["/srv/tool/__main__.py", "serve"], None, False),  # some other `python -m` program
        ([], None, False),
    ],
)
def test_is_management_command(
    argv: list[str], run_main: str | None, command: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if run_main is None:
        monkeypatch.delenv("RUN_MAIN", raising=False)
    else:
        monkeypatch.setenv("RUN_MAIN", run_main)
    assert is_management_command(argv) is command


@pytest.mark.parametrize(
    ("argv", "celery"),
    [
        (["/venv/bin/celery", "-A", "mysite", "worker"], True),
        (["celery", "-A", "mysite", "beat"], True),
        (["/venv/lib/python3.11/site-packages/celery/__main__.py", "-A", "mysite", "worker"], True),
        (["/venv/bin/gunicorn", "mysite.wsgi"], False),
        (["manage.py", "runserver"], False),
        (["/srv/tool/__main__.py", "serve"], False),
        ([], False),
    ],
)
def test_is_celery_process(argv: list[str], celery: bool) -> None:
    """START_IN_WORKERS started an elector in Celery's processes too (they load Django): in
    a worker, before it forks its pool."""
    assert is_celery_process(argv) is celery
