from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from common.admin import ReadOnlyAdmin, seconds
from common.inbox.models import DeadLetter, InboxMessage
from common.inbox.services import dead_letter_refusal, dead_letter_retry


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
        "message_type",
        "envelope_id",
        "received",
        "retried",
        "short_error",
    )
    list_filter = ("reason", "type", "received_at")
    search_fields = ("message_id", "type", "error", "raw_body")
    date_hierarchy = "received_at"
    ordering = ("-received_at", "-id")
    readonly_fields = (
        "reason",
        "message_type",
        "envelope_id",
        "message_id",
        "received",
        "retried",
        "error_block",
        "body_block",
        "headers",
    )
    exclude = ("error", "raw_body", "type", "received_at", "retried_at")
    actions = ["retry"]

    @admin.display(description="type", ordering="type")
    def message_type(self, obj: DeadLetter) -> str:
        """The envelope's own type; a letter parked before it was believed (say, forged)
        names the type its body claims."""
        claimed = envelope_claims(obj.raw_body).get("type")
        if obj.type and obj.type != "inbox.consume":
            return obj.type
        return f"{claimed} (claimed)" if claimed else "—"

    @admin.display(description="envelope id")
    def envelope_id(self, obj: DeadLetter) -> str:
        """The id operators search Flower and the outbox by (not the Celery task's)."""
        claimed = envelope_claims(obj.raw_body).get("id")
        return str(claimed) if claimed else obj.message_id or "—"

    @admin.display(description="received (UTC)", ordering="received_at")
    def received(self, obj: DeadLetter) -> str:
        return seconds(obj.received_at)

    @admin.display(description="handed back (UTC)", ordering="retried_at")
    def retried(self, obj: DeadLetter) -> str:
        return seconds(obj.retried_at)

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
        refused = [(letter, dead_letter_refusal(letter)) for letter in queryset]
        count = dead_letter_retry(ids=[letter.pk for letter, why in refused if why is None])
        if count:
            self.message_user(
                request, f"Handed {count} message(s) back to the queue.", messages.SUCCESS
            )
        for letter, why in refused:
            if why is not None:
                self.message_user(
                    request, f"Dead letter {letter.pk} not handed back: {why}.", messages.WARNING
                )


def envelope_claims(raw_body: str) -> dict[str, Any]:
    """The envelope's id and type as its body states them, unverified: the body is one
    envelope, or a task message (``{"args": [...]}`` or Celery's ``[args, kwargs, embed]``)
    whose first argument is one."""
    try:
        document = json.loads(raw_body)
        if isinstance(document, dict) and "args" in document:
            document = document["args"]
        if isinstance(document, list) and document and isinstance(document[0], list):
            document = document[0]
        if isinstance(document, list) and document and isinstance(document[0], str):
            document = json.loads(document[0])
    except (ValueError, RecursionError):
        return {}
    if not isinstance(document, dict):
        return {}
    return {k: document[k] for k in ("id", "type") if isinstance(document.get(k), str)}
