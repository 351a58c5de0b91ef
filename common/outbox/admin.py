from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from common.admin import AgeFilter, ReadOnlyAdmin
from common.outbox.models import OutboxMessage
from common.outbox.services import outbox_requeue


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "type",
        "destination",
        "status",
        "attempts",
        "created_at",
        "sent_at",
        "short_error",
    )
    list_filter = ("status", "type", "destination", AgeFilter)
    search_fields = ("message_id", "type")
    date_hierarchy = "created_at"
    readonly_fields = (
        "message_id",
        "type",
        "destination",
        "status",
        "attempts",
        "available_at",
        "created_at",
        "sent_at",
        "last_error",
        "pretty_envelope",
    )
    exclude = ("envelope",)
    actions = ["requeue"]

    @admin.display(description="error")
    def short_error(self, obj: OutboxMessage) -> str:
        return obj.last_error[:80]

    @admin.display(description="envelope")
    def pretty_envelope(self, obj: OutboxMessage) -> SafeString:
        return format_html("<pre>{}</pre>", json.dumps(obj.envelope, indent=2))

    @admin.action(description="Requeue selected dead messages")
    def requeue(self, request: HttpRequest, queryset: QuerySet[OutboxMessage]) -> None:
        count = outbox_requeue(ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Requeued {count} dead message(s).", messages.SUCCESS)
