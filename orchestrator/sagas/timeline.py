"""A saga's history as an operator reads it: one plain sentence per event, times to the
millisecond, and which step (and which send of it) each event is about. Admin only."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from orchestrator.sagas.models import Saga, SagaEvent

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
ICONS = {
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


def badge(state: str) -> SafeString:
    return format_html(
        '<span style="background:{};color:#fff;border-radius:3px;padding:1px 6px">{}</span>',
        COLOURS.get(state, "#444"),
        state,
    )


def _reply(d: Mapping[str, Any], attempt: int | None) -> str:
    which = f" to attempt {attempt}" if attempt else ""
    if not d.get("ok"):
        return f"refused{which}: {d.get('reason') or 'no reason given'}"
    result = ", ".join(f"{k} {v}" for k, v in (d.get("result") or {}).items())
    return f"done{which}" + (f" ({result})" if result else "")


def _timeout(d: Mapping[str, Any], attempt: int | None) -> str:
    if "attempts" in d:
        return f"no reply after {d['attempts']} attempt(s): given up"
    return f"no reply to attempt {d.get('attempt')}: sending it again"


SENTENCES: dict[str, Callable[[Mapping[str, Any], int | None], str]] = {
    "command_sent": lambda d, n: f"sent {d.get('command')}, attempt {n}",
    "compensation_sent": lambda d, n: f"undoing: sent {d.get('command')}, attempt {n}",
    "reply": _reply,
    "stale_reply": lambda d, n: "a late reply to an earlier send: ignored",
    "timeout": _timeout,
    "retry_scheduled": lambda d, n: (
        f"refused ({d.get('reason') or 'no reason'}): sent again at its deadline"
    ),
    "step_failed": lambda d, n: f"failed: {d.get('reason') or 'no reason given'}",
    "needs_operator": lambda d, n: (
        f"still failing after {d.get('attempts')} attempt(s): waits for an operator"
    ),
    "operator": lambda d, n: f"{d.get('operator')} chose {str(d.get('action')).replace('_', '-')}",
    "operator_retry": lambda d, n: "sent again now, by the operator",
    "operator_resume": lambda d, n: "taken as done, by the operator",
    "operator_force_compensate": lambda d, n: "forward path given up, by the operator",
    "completed": lambda d, n: "saga completed",
    "rejected": lambda d, n: f"saga rejected: {d.get('reason')}",
    "ignored_reply": lambda d, n: f"reply ignored: {d.get('why')}",
}


def sentence(event: SagaEvent) -> str:
    say = SENTENCES.get(event.kind)
    if say is None:
        return ", ".join(f"{k} {v}" for k, v in event.detail.items())
    return say(event.detail, event.attempt)


def events_table(saga: Saga) -> SafeString:
    start = saga.created_at
    rows = format_html_join(
        "",
        "<tr><td><code>{}</code></td><td>+{} ms</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                e.at.strftime("%H:%M:%S.%f")[:-3],
                round((e.at - start).total_seconds() * 1000),
                ICONS.get(e.kind, "•"),
                e.step or "—",
                sentence(e),
            )
            for e in saga.events.order_by("id")
        ),
    )
    return format_html(
        '<table class="saga-events"><tr><th>time (UTC)</th><th>since start</th><th></th>'
        "<th>step</th><th>what happened</th></tr>{}</table>",
        rows,
    )
