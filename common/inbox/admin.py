from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from common.admin import ReadOnlyAdmin
from common.inbox.models import DeadLetter, InboxMessage
from common.inbox.services import dead_letter_retry


@admin.register(InboxMessage)
class InboxMessageAdmin(ReadOnlyAdmin):
    list_display = ("message_id", "type", "source", "received_at")
    list_filter = ("type", "source", "received_at")
    search_fields = ("message_id", "type")
    date_hierarchy = "received_at"


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "reason",
        "type",
        "message_id",
        "received_at",
        "retried_at",
        "short_error",
    )
    list_filter = ("reason", "type", "received_at")
    search_fields = ("message_id", "type", "error")
    date_hierarchy = "received_at"
    readonly_fields = (
        "reason",
        "type",
        "message_id",
        "received_at",
        "retried_at",
        "error_block",
        "body_block",
        "headers",
    )
    exclude = ("error", "raw_body")
    actions = ["retry"]

    @admin.display(description="error")
    def short_error(self, obj: DeadLetter) -> str:
        return obj.error.splitlines()[-1][:100] if obj.error else ""

    @admin.display(description="error")
    def error_block(self, obj: DeadLetter) -> SafeString:
        return format_html("<pre>{}</pre>", obj.error)

    @admin.display(description="raw body")
    def body_block(self, obj: DeadLetter) -> SafeString:
        try:
            text = json.dumps(json.loads(obj.raw_body), indent=2)
        except ValueError:
            text = obj.raw_body
        return format_html("<pre>{}</pre>", text)

    @admin.action(description="Retry selected (hand valid messages back to this service's queue)")
    def retry(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        count = dead_letter_retry(ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(
            request, f"Handed {count} message(s) back to the queue.", messages.SUCCESS
        )
