"""Health endpoints: ``elector.status()`` as JSON, mounted in Flask or Django.

In pre-fork servers the elector is created after the fork (gunicorn's ``post_fork``, uWSGI's
``@postfork``), after the URL routes were declared. So every helper takes either an elector or
a zero-argument callable that returns the current one (or None before it exists).

The answer is HTTP 200 while the elector runs and knows the leader (it may or may not be the
leader: ``role`` says), and 503 when it is stopped, not created yet, cut off from etcd, or a
copy inherited across ``fork()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Union

if TYPE_CHECKING:
    from leaderelect.elector import LeaderElector

__all__ = ["django_view", "flask_blueprint", "health"]

ElectorRef = Union["LeaderElector", Callable[[], "LeaderElector | None"], None]


def _resolve(ref: ElectorRef) -> LeaderElector | None:
    from leaderelect.elector import LeaderElector

    if ref is None or isinstance(ref, LeaderElector):
        return ref
    return ref()


def health(ref: ElectorRef) -> tuple[dict[str, Any], int]:
    """``(status dict, HTTP status)`` for the elector *ref* is or returns."""
    elector = _resolve(ref)
    if elector is None:
        return {"role": "not started"}, 503
    status = elector.status()
    ok = status["role"] not in ("stopped", "forked copy") and bool(status["leader_known"])
    return status, 200 if ok else 503


def flask_blueprint(ref: ElectorRef, url: str = "/leaderelect", name: str = "leaderelect") -> Any:
    """A Flask blueprint answering ``GET <url>`` with :func:`health` as JSON.

    .. code-block:: python

        app.register_blueprint(flask_blueprint(lambda: elector))
    """
    from flask import Blueprint, jsonify

    blueprint = Blueprint(name, __name__)

    @blueprint.get(url)
    def leaderelect_status() -> Any:
        body, code = health(ref)
        return jsonify(body), code

    return blueprint


def django_view(ref: ElectorRef) -> Callable[..., Any]:
    """A Django view answering with :func:`health` as JSON.

    .. code-block:: python

        urlpatterns = [path("leaderelect", django_view(get_elector))]
    """
    from django.http import JsonResponse

    def leaderelect_status(request: Any) -> Any:
        body, code = health(ref)
        return JsonResponse(body, status=code)

    return leaderelect_status
