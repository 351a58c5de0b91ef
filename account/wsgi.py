import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

from common import tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "account.settings")
# Before the handler loads its middleware list, which tracing adds to (post_fork starts it).
tracing.instrument()
application = get_wsgi_application()
# Import every view now, so gunicorn's --preload does it once before forking its workers.
get_resolver().url_patterns  # noqa: B018
