"""WSGI entry point: ``gunicorn -w 2 mysite.wsgi`` (no --preload when START_IN_WORKERS)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
application = get_wsgi_application()
