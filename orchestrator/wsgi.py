import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")
application = get_wsgi_application()
# Import every view now, so gunicorn's --preload does it once before forking its workers.
get_resolver().url_patterns  # noqa: B018
