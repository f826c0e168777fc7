"""A minimal Django site with leaderelect: see LEADERELECT below."""

import os

SECRET_KEY = "example-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["leaderelect.django"]
ROOT_URLCONF = "mysite.urls"
DATABASES: dict = {}
USE_TZ = True

LEADERELECT = {
    "NAME": os.environ.get("ELECTION", "django-jobs"),
    "ENDPOINTS": os.environ.get("ETCD_ENDPOINTS", "127.0.0.1:2379"),
    "TTL": int(os.environ.get("ELECTION_TTL", "5")),
    "ON_ELECTED": "mysite.jobs.start",
    "ON_DEMOTED": "mysite.jobs.stop",
    # Opt in: each server process (gunicorn worker without --preload, uWSGI with --lazy-apps,
    # runserver's serving child) campaigns. Never for migrate, shell and other commands.
    # Alternative: leave it False and run `python manage.py leaderelect` as its own process.
    "START_IN_WORKERS": os.environ.get("START_IN_WORKERS", "1") == "1",
}

LOGGING = {
    "version": 1,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"mysite": {"handlers": ["stderr"], "level": "INFO"}},
}
