"""The saga page links to the saga's trace in the tracing UI named by TRACE_UI_URL."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

from common.testing import OPERATOR
from orchestrator.sagas.services import checkout_start

pytestmark = pytest.mark.django_db
JAEGER = "http://127.0.0.1:16686/search?service=orchestrator&tags=%7B%22cafe.saga.id%22%3A%22{saga_id}%22%7D"


def page_of_a_saga(client: Client) -> tuple[str, str]:
    saga = checkout_start(
        actor=OPERATOR, customer_id=uuid.uuid4(), items=[{"menu_item_id": 1, "quantity": 1}]
    )
    client.force_login(get_user_model().objects.create_superuser("op", "", "pw"))
    page = client.get(f"/orchestrator/admin/sagas/saga/{saga.pk}/change/")
    assert page.status_code == 200
    return str(saga.pk), page.content.decode()


@override_settings(TRACE_UI_URL=JAEGER)
def test_the_saga_page_links_to_its_trace(client: Client) -> None:
    saga_id, page = page_of_a_saga(client)
    link = JAEGER.replace("{saga_id}", saga_id).replace("&", "&amp;")
    assert f'<a href="{link}" target="_blank" rel="noopener">open trace</a>' in page


@override_settings(TRACE_UI_URL="")
def test_without_a_tracing_ui_there_is_no_link(client: Client) -> None:
    _, page = page_of_a_saga(client)
    assert "open trace" not in page
