import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from common.testing import assert_admin_pages_load
from customer.customers.services import customer_register


@pytest.mark.django_db
def test_every_admin_list_page_loads(client: Client) -> None:
    assert assert_admin_pages_load(client) >= 3


URL = "/customer/admin/customers/customer/"


@pytest.fixture
def operator(client: Client) -> Client:
    client.force_login(get_user_model().objects.create_superuser("op", "", "pw"))
    return client


@pytest.mark.django_db
def test_a_customer_is_read_only_blocked_by_action_and_never_deleted(operator: Client) -> None:
    customer = customer_register(name="Ann", email="ann@example.com", password="pw-long-enough-1")

    page = operator.get(f"{URL}{customer.pk}/change/").content.decode()
    assert 'name="_save"' not in page and "deletelink" not in page
    assert operator.post(f"{URL}{customer.pk}/delete/", {"post": "yes"}).status_code == 403

    operator.post(URL, {"action": "block", "_selected_action": [customer.pk]})
    customer.refresh_from_db()
    assert customer.status == "blocked"


@pytest.mark.django_db
def test_the_admin_has_no_view_site_link_to_a_json_404(operator: Client) -> None:
    page = operator.get("/customer/admin/").content.decode()

    assert "View site" not in page
