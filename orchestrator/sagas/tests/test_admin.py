import pytest
from django.test import Client

from common.testing import assert_admin_pages_load


@pytest.mark.django_db
def test_every_admin_list_page_loads(client: Client) -> None:
    assert assert_admin_pages_load(client) >= 3
