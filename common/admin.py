"""Admin building blocks shared by the services."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shows rows that only use-cases may write: operators look, actions act, nobody edits."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class AgeFilter(admin.SimpleListFilter):
    """Filter by how long ago ``created_at`` was (e.g. to find what is stuck)."""

    title = "age"
    parameter_name = "age"
    field = "created_at"
    SPANS = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1), "1d": timedelta(days=1)}

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("1m", "older than a minute"),
            ("1h", "older than an hour"),
            ("1d", "older than a day"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Model]) -> QuerySet[Model]:
        span = self.SPANS.get(str(self.value()))
        if span is None:
            return queryset
        return queryset.filter(**{f"{self.field}__lt": timezone.now() - span})


def seconds(moment: datetime | None) -> str:
    """A time as operators compare them: UTC, to the second (Django's default drops seconds)."""
    return timezone.localtime(moment, UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else "—"


# Where each service's admin shows one of its records, on the same operator listener.
RECORD_PAGES = {
    "order": "/order/admin/orders/order/{}/change/",
    "customer": "/customer/admin/customers/customer/{}/change/",
    "account": "/account/admin/accounts/account/{}/change/",
}


def record_link(service: str, record_id: object, *, text: str | None = None) -> SafeString:
    """A link to a record in another service's admin (the gateway serves every admin), so an
    operator follows a saga's order or customer without copying ids."""
    if record_id is None:
        return format_html("{}", "—")
    return format_html(
        '<a href="{}">{}</a>', RECORD_PAGES[service].format(record_id), text or str(record_id)
    )
