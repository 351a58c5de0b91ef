"""An operator's rounds in a real browser, through the gateway's operator listener: the saga
list and its filters, a saga's timeline, an operator action through its confirmation page on
a saga put into ``failed``, a dead letter requeued, and a checkout's tasks in Flower."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select

from common.polling import wait_until
from tests.e2e.browser.conftest import screenshot
from tests.e2e.cafe import OPERATOR, Cafe
from tests.e2e.conftest import Stack

ADMIN = "/orchestrator/admin"
SAGAS = f"{ADMIN}/sagas/saga/"


def until(check: Callable[[], object], timeout_s: float = 30.0, what: str = "") -> Any:
    """``check``'s first truthy answer. An element that goes stale under the check (the page it
    was found on was replaced by a navigation, or Flower redrew its table) is "not yet": the
    next ask finds the new page's elements."""

    def ask() -> object:
        try:
            return check()
        except StaleElementReferenceException:
            return None

    return wait_until(ask, timeout_s=timeout_s, every_s=0.2, what=what)


def shell(stack: Stack, service: str, code: str) -> str:
    return stack.manage(service, "shell", "-c", code).strip()


def text(driver: WebDriver) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text)


def log_in(driver: WebDriver, url: str) -> None:
    driver.get(f"{url}{ADMIN}/login/")
    driver.find_element(By.NAME, "username").send_keys(OPERATOR[0])
    driver.find_element(By.NAME, "password").send_keys(OPERATOR[1])
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    until(lambda: driver.find_elements(By.ID, "logout-form"), what="the admin index")


def put_into_failed(stack: Stack, cafe: Cafe, customer: str) -> dict[str, object]:
    """A checkout whose first command finds no order worker, marked failed as the sweep does
    once its tries are spent (waiting for that takes a minute). The order worker stays stopped
    until the caller starts it: started at once, it would answer the command, and the reply
    could move the saga on before the operator looks at it."""
    stack.supervisorctl("stop", "order-worker")
    checkout = cafe.checkout(customer, [{"menu_item_id": 1, "quantity": 1}])
    shell(
        stack,
        "orchestrator",
        "from orchestrator.sagas.models import Saga; "
        f"Saga.objects.filter(pk='{checkout['id']}').update(state='failed', deadline=None)",
    )
    return checkout


ORPHAN_REPLY = """
import uuid
from django.db import transaction
from common.messaging.contract import OrderRef, Reply
from common.messaging.envelope import Correlation, new_command, new_reply
from common.outbox.services import outbox_put

command = new_command(
    "order.approve",
    OrderRef(order_id=uuid.uuid4()),
    source="orchestrator",
    correlation=Correlation(saga_id=uuid.uuid4(), step="approve_order", attempt=1),
)
reply = new_reply(command, Reply(ok=True), source="order")
with transaction.atomic():
    outbox_put(reply)
print(reply.id)
"""


def orphan_reply(stack: Stack) -> str:
    """A reply, signed by the order service, to a command of no saga: the orchestrator parks
    it as ``unroutable`` (a letter that can be handed back, unlike a forged one)."""
    return shell(stack, "order", ORPHAN_REPLY).splitlines()[-1]


def shown_after_refresh(driver: WebDriver, wanted: str) -> bool:
    driver.refresh()
    return wanted in text(driver)


def test_an_operators_rounds(
    stack: Stack, gateway: httpx.Client, browser: WebDriver, request: pytest.FixtureRequest
) -> None:
    cafe = Cafe(gateway)
    rich, poor = cafe.customer(deposit=50_000), cafe.customer()
    completed = cafe.wait(cafe.checkout(rich, [{"menu_item_id": 2, "quantity": 2}]))
    rejected = cafe.wait(cafe.checkout(poor, [{"menu_item_id": 3, "quantity": 1}]))
    assert (completed["state"], rejected["state"]) == ("completed", "rejected")
    request.addfinalizer(lambda: stack.supervisorctl("start", "order-worker"))
    failed = put_into_failed(stack, cafe, rich)
    url = stack.operator_url

    # The saga list: newest first, every column (the times too) inside 1400 px.
    log_in(browser, url)
    browser.get(f"{url}{SAGAS}")
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert (
        rows[0].find_element(By.CSS_SELECTOR, "th, td.field-short_id").text == str(failed["id"])[:8]
    )
    cut_off = browser.execute_script(
        "const r = document.querySelector('#changelist .results');"
        "return r.scrollWidth > r.clientWidth"
    )
    assert not cut_off, "the saga list scrolls sideways at 1400 px: its time columns are hidden"
    assert browser.find_element(By.CSS_SELECTOR, "th.column-updated").is_displayed()
    rejected_row = next(r for r in rows if r.text.startswith(str(rejected["id"])[:8]))
    assert rejected_row.find_element(By.CSS_SELECTOR, "td.field-step").text == "debit"
    screenshot(browser, "saga-list")

    # Filter: the failed ones.
    browser.find_element(By.XPATH, "//nav[@id='changelist-filter']//a[text()='Failed']").click()
    until(lambda: "state__exact=failed" in browser.current_url)
    # The new page's rows, once it has loaded (the URL changes before they are there, and the
    # old page's rows are still found until it is replaced).
    until(
        lambda: (
            [r.text[:8] for r in browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")]
            == [str(failed["id"])[:8]]
        ),
        what="the failed sagas alone",
    )

    # The rejected saga's page: its steps and history, in sentences, with links.
    browser.get(f"{url}{SAGAS}{rejected['id']}/change/")
    page = text(browser)
    assert "refused to attempt 1: insufficient_funds" in page
    assert "saga rejected: insufficient_funds" in page and "ok=True" not in page
    order_link = browser.find_element(By.LINK_TEXT, rejected["order_id"])
    assert urlsplit(order_link.get_attribute("href") or "").path.startswith("/order/admin/")
    screenshot(browser, "saga-timeline")

    # The failed saga: Retry, through its confirmation page; then it completes.
    stack.supervisorctl("start", "order-worker")
    browser.get(f"{url}{SAGAS}{failed['id']}/change/")
    browser.find_element(By.ID, "act-retry").click()
    until(lambda: "/act/retry/" in browser.current_url)
    assert "order.create_pending" in text(browser)
    screenshot(browser, "saga-retry-confirm")
    browser.find_element(By.ID, "confirm").click()
    until(lambda: "Retry: 1 saga(s)." in text(browser), what="the retry's message")
    assert cafe.wait(failed)["state"] == "completed"

    # A dead letter: opened, then handed back to the queue.
    letter = orphan_reply(stack)
    browser.get(f"{url}{ADMIN}/inbox/deadletter/")
    until(lambda: shown_after_refresh(browser, letter), what="the dead letter in the list")
    row = next(
        r
        for r in browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
        if letter in r.text
    )
    assert "order.approve.reply" in row.text and "unroutable" in row.text.lower()
    row.find_element(By.CSS_SELECTOR, "th a").click()
    until(lambda: "/change/" in browser.current_url)
    assert letter in text(browser)
    screenshot(browser, "dead-letter")
    browser.back()
    row = next(
        r
        for r in browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
        if letter in r.text
    )
    row.find_element(By.CSS_SELECTOR, "input.action-select").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("retry")
    browser.find_element(By.CSS_SELECTOR, "button[name=index]").click()
    until(lambda: "Handed 1 message(s) back to the queue." in text(browser))

    # Flower: the completed checkout's tasks, found by its commands' message ids.
    commands = json.loads(
        shell(
            stack,
            "orchestrator",
            "import json; from orchestrator.sagas.models import SagaEvent; "
            f"print(json.dumps([str(e.message_id) for e in SagaEvent.objects.filter("
            f"saga_id='{completed['id']}', kind='command_sent')]))",
        ).splitlines()[-1]
    )
    assert len(commands) == 4
    user, password = stack.env["FLOWER_USER"], stack.env["FLOWER_PASSWORD"]
    host = urlsplit(url).netloc
    # Flower's task list, searched by message id (its query is a POST, which the gateway passes
    # as the one read among Flower's POSTs): every command of the checkout is a task that
    # succeeded, and the dead letter's message reads FAILURE, not SUCCESS.
    browser.get(f"http://{user}:{password}@{host}/flower/tasks")
    [search] = until(
        lambda: browser.find_elements(By.CSS_SELECTOR, "#tasks-table_filter input"),
        what="the task list's search box",
    )

    def found(term: str) -> str:
        search.clear()
        search.send_keys(term)
        rows = until(
            lambda: [
                r.text
                for r in browser.find_elements(By.CSS_SELECTOR, "#tasks-table tbody tr")
                if term in r.text
            ],
            what=f"the task list's row for {term}",
        )
        return str(rows[0])

    for message_id in commands:
        assert "SUCCESS" in found(message_id)
    # Celery reports a rejection without requeue as a failure (then the rejection, which
    # ranks below it): the letter's message reads FAILURE.
    assert "FAILURE" in found(letter) and "SUCCESS" not in found(letter)
    found(commands[0])
    screenshot(browser, "flower-tasks")
