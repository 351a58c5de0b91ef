"""Operators' view of sagas: filter what is stuck, read a saga's timeline, and act on it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from common.admin import AgeFilter, ReadOnlyAdmin
from common.api.errors import BusinessError
from orchestrator.sagas import engine
from orchestrator.sagas.models import Saga, SagaEvent
from orchestrator.sagas.services import definition_of, saga_operator_action, state_of

COLOURS = {
    "pending": "#999",
    "running": "#1f6feb",
    "succeeded": "#2da44e",
    "failed": "#cf222e",
    "timed_out": "#bf8700",
    "compensating": "#8250df",
    "compensated": "#6e7781",
    "completed": "#2da44e",
    "rejected": "#cf222e",
}
EVENT_ICONS = {
    "command_sent": "→",
    "compensation_sent": "↩",
    "reply": "←",
    "stale_reply": "⤳",
    "timeout": "⏱",
    "retry_scheduled": "↻",
    "step_failed": "✗",
    "needs_operator": "⚠",
    "operator": "👤",
    "completed": "✓",
    "rejected": "✗",
}


def _badge(state: str) -> SafeString:
    return format_html(
        '<span style="background:{};color:#fff;border-radius:3px;padding:1px 6px">{}</span>',
        COLOURS.get(state, "#444"),
        state,
    )


@admin.register(Saga)
class SagaAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "type",
        "state_badge",
        "reason",
        "current",
        "attempt",
        "order_id",
        "created_at",
        "updated_at",
    )
    list_filter = ("type", "state", "reason", "version", AgeFilter)
    search_fields = ("id", "order_id", "customer_id")
    date_hierarchy = "created_at"
    fields = (
        "id",
        "type",
        "version",
        "state",
        "reason",
        "order_id",
        "customer_id",
        "deadline",
        "created_at",
        "finished_at",
        "timeline",
        "trace",
        "data",
    )
    readonly_fields = fields
    actions = ["retry", "resume", "force_compensate"]

    @admin.display(description="state", ordering="state")
    def state_badge(self, saga: Saga) -> SafeString:
        return _badge(saga.state)

    @admin.display(description="current step")
    def current(self, saga: Saga) -> str:
        steps = definition_of(saga).steps
        return steps[saga.current_step].name if saga.current_step < len(steps) else "—"

    @admin.display(description="trace")
    def trace(self, saga: Saga) -> SafeString | str:
        """A link to the saga's trace in the tracing UI (TRACE_UI_URL), when there is one."""
        if not settings.TRACE_UI_URL:
            return "—"
        url = settings.TRACE_UI_URL.replace("{saga_id}", str(saga.id))
        return format_html('<a href="{}" target="_blank" rel="noopener">open trace</a>', url)

    @admin.display(description="timeline")
    def timeline(self, saga: Saga) -> SafeString:
        steps = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    n,
                    s["name"],
                    _badge(s["state"]),
                    s["attempts"],
                    _span(s["started_at"], s["finished_at"]),
                )
                for n, s in enumerate(saga.steps, start=1)
            ),
        )
        start = saga.created_at
        events = format_html_join(
            "",
            '<li style="margin:2px 0"><code>+{} ms</code> {} <b>{}</b> {} {}</li>',
            (
                (
                    round((e.at - start).total_seconds() * 1000),
                    EVENT_ICONS.get(e.kind, "•"),
                    e.kind,
                    e.step,
                    _detail(e),
                )
                for e in saga.events.order_by("id")
            ),
        )
        return format_html(
            '<table style="margin-bottom:8px"><tr><th>#</th><th>step</th><th>state</th>'
            "<th>attempts</th><th>took</th></tr>{}</table>"
            '<ol style="list-style:none;padding-left:0;border-left:3px solid #ddd;padding-left:8px">{}</ol>',
            steps,
            events,
        )

    def _act(self, request: HttpRequest, queryset: QuerySet[Saga], action: str) -> None:
        done, refused = 0, []
        for saga_id in queryset.values_list("pk", flat=True):
            try:
                saga_operator_action(
                    saga_id=saga_id, action=action, operator=request.user.get_username()
                )
                done += 1
            except BusinessError as exc:
                refused.append(exc.detail)
        if done:
            self.message_user(request, f"{action}: {done} saga(s).", messages.SUCCESS)
        for detail in refused:
            self.message_user(request, detail, messages.WARNING)

    @admin.action(description="Retry the current step now")
    def retry(self, request: HttpRequest, queryset: QuerySet[Saga]) -> None:
        self._act(request, queryset, "retry")

    @admin.action(description="Resume: the current step took effect, go on")
    def resume(self, request: HttpRequest, queryset: QuerySet[Saga]) -> None:
        self._act(request, queryset, "resume")

    @admin.action(description="Force-compensate (undo what was done)…")
    def force_compensate(
        self, request: HttpRequest, queryset: QuerySet[Saga]
    ) -> TemplateResponse | None:
        """Asks first, showing what each saga would undo. Past its pivot a saga is not offered
        it (its order goes through: only retry and resume)."""
        rows = [_undo_row(saga) for saga in queryset.order_by("created_at", "id")]
        offered = [row["saga"].pk for row in rows if row["offered"]]
        if request.POST.get("confirmed") == "yes":
            self._act(request, queryset.filter(pk__in=offered), "force_compensate")
            for row in rows:
                if not row["offered"]:
                    self.message_user(
                        request, f"{row['saga'].id} not compensated: {row['why']}", messages.WARNING
                    )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Force-compensate sagas",
            "rows": rows,
            "offered": len(offered),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/sagas/force_compensate.html", context)


def _undo_row(saga: Saga) -> dict[str, Any]:
    definition, state = definition_of(saga), state_of(saga)
    offered = engine.force_compensate_offered(definition, state)
    why = ""
    if not offered:
        why = (
            "it has ended"
            if state.status in engine.TERMINAL
            else "it is past its pivot: its order goes through (retry or resume it)"
        )
    return {
        "saga": saga,
        "current": definition.steps[saga.current_step].name,
        "offered": offered,
        "why": why,
        "undo": engine.undone_by_force_compensate(definition, state),
    }


def _span(started: str | None, finished: str | None) -> str:
    if started and finished:
        took = datetime.fromisoformat(finished) - datetime.fromisoformat(started)
        return f"{took.total_seconds() * 1000:.0f} ms"
    return "…" if started else ""


def _detail(event: SagaEvent) -> str:
    parts = [f"attempt {event.attempt}"] if event.attempt else []
    parts += [
        f"{k}={v}"
        for k, v in event.detail.items()
        if k in {"command", "ok", "reason", "action", "operator"}
    ]
    return " · ".join(parts)
