"""Operators' view of sagas: filter what is stuck, read a saga's timeline, and act on it (every
action through a page that says what it will do, and asks)."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from common.admin import AgeFilter, ReadOnlyAdmin, record_link, seconds
from common.api.errors import BusinessError
from orchestrator.sagas import engine
from orchestrator.sagas.models import Saga
from orchestrator.sagas.services import (
    OPERATOR_ACTIONS,
    definition_of,
    policy,
    saga_operator_action,
    state_of,
)
from orchestrator.sagas.timeline import badge, events_table

ACTIONS = {
    "retry": (
        "Retry",
        "Send the current step (or its compensation) again now, with a fresh count of tries.",
    ),
    "resume": (
        "Resume",
        "You vouch that the current step (or compensation) took effect: the saga goes on after it.",
    ),
    "force_compensate": (
        "Force-compensate",
        "Give up the forward path and undo what was done, newest step first.",
    ),
}


@admin.register(Saga)
class SagaAdmin(ReadOnlyAdmin):
    # Narrow columns, so the times show at 1400 px; the full ids are on each saga's page.
    list_display = (
        "short_id",
        "kind",
        "state_badge",
        "reason",
        "step",
        "attempt_shown",
        "order_link",
        "created",
        "updated",
    )
    list_filter = ("type", "state", "reason", "version", AgeFilter)
    search_fields = ("id", "order_id", "customer_id")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")  # newest first
    fields = (
        "id",
        "type",
        "version",
        "state_badge",
        "reason",
        "links",
        "trace",
        "deadline_shown",
        "created",
        "finished",
        "steps_table",
        "events",
        "data",
    )
    readonly_fields = fields
    actions = list(ACTIONS)
    change_form_template = "admin/sagas/saga/change_form.html"

    @admin.display(description="saga", ordering="id")
    def short_id(self, saga: Saga) -> str:
        return str(saga.id)[:8]

    @admin.display(description="type", ordering="type")
    def kind(self, saga: Saga) -> str:
        return saga.type  # "place_order", not its two-line label

    @admin.display(description="state", ordering="state")
    def state_badge(self, saga: Saga) -> SafeString:
        return badge(saga.state)

    @admin.display(description="step")
    def step(self, saga: Saga) -> str:
        """The step that waits (↩ while it is being undone), or, once rejected, the one that
        failed; a completed saga has none."""
        index = _step_shown(saga)
        if index is None:
            return "—"
        name = definition_of(saga).steps[index].name
        return f"↩ {name}" if saga.phase == engine.Phase.COMPENSATE else name

    @admin.display(description="trace")
    def trace(self, saga: Saga) -> SafeString | str:
        """A link to the saga's trace in the tracing UI (TRACE_UI_URL), when there is one."""
        if not settings.TRACE_UI_URL:
            return "—"
        url = settings.TRACE_UI_URL.replace("{saga_id}", str(saga.id))
        return format_html('<a href="{}" target="_blank" rel="noopener">open trace</a>', url)

    @admin.display(description="attempt")
    def attempt_shown(self, saga: Saga) -> str:
        """The send of that step (of its compensation, while undoing) the saga is at."""
        index = _step_shown(saga)
        if index is None:
            return "—"
        if saga.phase == engine.Phase.COMPENSATE:
            return str(saga.attempt)
        return str(saga.steps[index]["attempts"])

    @admin.display(description="order", ordering="order_id")
    def order_link(self, saga: Saga) -> SafeString:
        return record_link("order", saga.order_id, text=str(saga.order_id)[:8])

    @admin.display(description="created (UTC)", ordering="created_at")
    def created(self, saga: Saga) -> str:
        return seconds(saga.created_at)

    @admin.display(description="updated (UTC)", ordering="updated_at")
    def updated(self, saga: Saga) -> str:
        return seconds(saga.updated_at)

    @admin.display(description="finished (UTC)")
    def finished(self, saga: Saga) -> str:
        return seconds(saga.finished_at)

    @admin.display(description="reply due (UTC)")
    def deadline_shown(self, saga: Saga) -> str:
        return seconds(saga.deadline)

    @admin.display(description="records")
    def links(self, saga: Saga) -> SafeString:
        """The saga's records in the other services' admins (a saga's other links go here too)."""
        return format_html(
            "order {} · customer {} · account {}",
            record_link("order", saga.order_id),
            record_link("customer", saga.customer_id),
            record_link("account", saga.customer_id),
        )

    @admin.display(description="steps")
    def steps_table(self, saga: Saga) -> SafeString:
        undo_sends = Counter(
            saga.events.filter(kind="compensation_sent").values_list("step", flat=True)
        )
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    n,
                    s["name"],
                    badge(s["state"]),
                    s["attempts"],
                    undo_sends.get(s["name"], 0) or "",
                    _took(s["started_at"], s["finished_at"]),
                )
                for n, s in enumerate(saga.steps, start=1)
            ),
        )
        return format_html(
            "<table><tr><th>#</th><th>step</th><th>state</th><th>attempts</th>"
            "<th>compensation attempts</th><th>took</th></tr>{}</table>",
            rows,
        )

    @admin.display(description="history")
    def events(self, saga: Saga) -> SafeString:
        return events_table(saga)

    def get_urls(self) -> list[URLPattern]:
        confirm = self.admin_site.admin_view(self.confirm_view)
        return [
            path("<uuid:saga_id>/act/<str:action>/", confirm, name="sagas_saga_act"),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        saga_id = _uuid(object_id)
        saga = Saga.objects.filter(pk=saga_id).first() if saga_id else None
        offered = []
        if saga is not None:
            offered = [
                {"action": a, "label": ACTIONS[a][0], "url": _act_url(saga, a)}
                for a in ACTIONS
                if _refusal(saga, a) is None
            ]
        context = {**(extra_context or {}), "saga_actions": offered}
        return super().change_view(request, object_id, form_url, context)

    def confirm_view(self, request: HttpRequest, saga_id: uuid.UUID, action: str) -> HttpResponse:
        """One saga, one action: what it will do, then Yes or No."""
        if action not in ACTIONS:
            raise Http404
        queryset = Saga.objects.filter(pk=saga_id)
        if not queryset.exists():
            raise Http404
        return self._confirm(request, queryset, action) or HttpResponseRedirect(
            reverse("admin:sagas_saga_change", args=[saga_id])
        )

    def _confirm(
        self, request: HttpRequest, queryset: QuerySet[Saga], action: str
    ) -> TemplateResponse | None:
        """Asks first, showing what each saga would get; runs on "Yes" only the sagas it is
        offered to, and says why for the others."""
        rows = [_row(saga, action) for saga in queryset.order_by("-created_at", "-id")]
        offered = [row["saga"].pk for row in rows if row["why"] is None]
        if request.method == "POST" and request.POST.get("confirmed") == "yes":
            self._act(request, offered, action)
            for row in rows:
                if row["why"] is not None:
                    self.message_user(
                        request,
                        f"{row['saga'].id}: {ACTIONS[action][0].lower()} not offered: {row['why']}",
                        messages.WARNING,
                    )
            return None
        label, explanation = ACTIONS[action]
        context = {
            **self.admin_site.each_context(request),
            "title": f"{label} saga{'s' if len(rows) != 1 else ''}?",
            "label": label,
            "explanation": explanation,
            "action": action,
            "rows": rows,
            "offered": len(offered),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "from_list": request.POST.get("action") == action,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/sagas/confirm_action.html", context)

    def _act(self, request: HttpRequest, saga_ids: list[uuid.UUID], action: str) -> None:
        done, refused = 0, []
        for saga_id in saga_ids:
            try:
                saga_operator_action(
                    saga_id=saga_id, action=action, operator=request.user.get_username()
                )
                done += 1
            except BusinessError as exc:
                refused.append(exc.detail)
        if done:
            self.message_user(request, f"{ACTIONS[action][0]}: {done} saga(s).", messages.SUCCESS)
        for detail in refused:
            self.message_user(request, detail, messages.WARNING)

    @admin.action(description="Retry the current step now…")
    def retry(self, request: HttpRequest, queryset: QuerySet[Saga]) -> TemplateResponse | None:
        return self._confirm(request, queryset, "retry")

    @admin.action(description="Resume: the current step took effect, go on…")
    def resume(self, request: HttpRequest, queryset: QuerySet[Saga]) -> TemplateResponse | None:
        return self._confirm(request, queryset, "resume")

    @admin.action(description="Force-compensate (undo what was done)…")
    def force_compensate(
        self, request: HttpRequest, queryset: QuerySet[Saga]
    ) -> TemplateResponse | None:
        """Past its pivot a saga is not offered it (its order goes through: retry or resume)."""
        return self._confirm(request, queryset, "force_compensate")


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _act_url(saga: Saga, action: str) -> str:
    return reverse("admin:sagas_saga_act", args=[saga.pk, action])


def _step_shown(saga: Saga) -> int | None:
    if saga.state == Saga.State.COMPLETED:
        return None
    if saga.state == Saga.State.REJECTED:
        return next(
            (i for i, s in enumerate(saga.steps) if s["state"] in {"failed", "timed_out"}), None
        )
    return saga.current_step


def _refusal(saga: Saga, action: str) -> str | None:
    """Why ``action`` cannot run on this saga now, or None. The engine is pure: asking it
    changes nothing."""
    definition, state = definition_of(saga), state_of(saga)
    if action == "force_compensate" and not engine.force_compensate_offered(definition, state):
        if state.status in engine.TERMINAL:
            return "it has ended"
        return "it is past its pivot: its order goes through (retry or resume it)"
    try:
        OPERATOR_ACTIONS[action](definition, state, policy())
    except engine.NotApplicable as exc:
        return str(exc)
    return None


def _row(saga: Saga, action: str) -> dict[str, Any]:
    definition, state = definition_of(saga), state_of(saga)
    index = min(saga.current_step, len(definition.steps) - 1)
    current = definition.steps[index]
    compensating = saga.phase == engine.Phase.COMPENSATE
    sends = {
        "retry": [
            (
                current.name,
                current.compensation.command
                if compensating and current.compensation
                else current.command,
            )
        ],
        "resume": [],
        "force_compensate": engine.undone_by_force_compensate(definition, state),
    }[action]
    return {
        "saga": saga,
        "current": f"↩ {current.name}" if compensating else current.name,
        "why": _refusal(saga, action),
        "sends": sends,
    }


def _took(started: str | None, finished: str | None) -> str:
    if started and finished:
        took = datetime.fromisoformat(finished) - datetime.fromisoformat(started)
        return f"{took.total_seconds() * 1000:.0f} ms"
    return "…" if started else ""
