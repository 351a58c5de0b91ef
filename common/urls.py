"""URL layout shared by every service: the public API under ``/api/v1/``, operator pages under
``/<service>/`` (admin, OpenAPI, health, metrics), matching the gateway's prefixes."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from common.api.health import healthz, readyz
from common.metrics import metrics_view

# Django's own error pages become problem+json, like every DRF error.
handler400 = "common.api.errors.bad_request_view"
handler403 = "common.api.errors.permission_denied_view"
handler404 = "common.api.errors.not_found_view"
handler500 = "common.api.errors.server_error_view"


def service_urlpatterns(api_urls: str) -> list[URLPattern | URLResolver]:
    """All routes of one service; ``api_urls`` is the dotted path of its API urlconf."""
    service = settings.SERVICE_NAME
    admin.site.site_header = f"{service} service administration"
    admin.site.site_title = f"{service} admin"
    # No "View site": a service has no site of its own (its root is a JSON 404).
    admin.site.site_url = None
    # The models' list pages need the width (a saga's times show at 1400 px without it).
    admin.site.enable_nav_sidebar = False
    return [
        path("api/v1/", include(api_urls)),
        path(f"{service}/admin/", admin.site.urls),
        path(f"{service}/api/schema/", SpectacularAPIView.as_view(), name="schema"),
        path(
            f"{service}/api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"
        ),
        path(f"{service}/healthz", healthz, name="healthz"),
        path(f"{service}/readyz", readyz, name="readyz"),
        path(f"{service}/metrics", metrics_view, name="metrics"),
    ]
