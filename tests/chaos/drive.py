"""The clients: customers sign up, log in, deposit, check out and cancel through the gateway,
paced so that the run's checkouts spread over its seconds. What each was told is recorded; the
audit compares it with what the API shows once the system has settled."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.chaos.client import Api, GaveUp, Login

PASSWORD = "chaos correct horse battery"


@dataclass
class Customer:
    id: str
    login: Login
    deposits: dict[str, int] = field(default_factory=dict)  # entry id -> amount, answered 201
    opened: bool = False


@dataclass
class Record:
    """What the API answered: every registered customer, accepted deposit, checkout and
    cancellation (202), refusals by code, and calls that got no answer in time."""

    customers: dict[str, Customer] = field(default_factory=dict)
    checkouts: dict[str, dict[str, Any]] = field(default_factory=dict)
    cancellations: dict[str, dict[str, Any]] = field(default_factory=dict)
    refused: Counter[str] = field(default_factory=Counter)
    gave_up: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def refuse(self, what: str, response: Any) -> None:
        try:
            code = response.json().get("code", "")
        except ValueError:
            code = ""
        with self.lock:
            self.refused[f"{what} {response.status_code} {code}".strip()] += 1


@dataclass
class Plan:
    checkouts: int
    seconds: float
    customers: int
    seed: int
    clients: int = 8
    # No new turn starts after this long, however many checkouts are still to come (a machine
    # too slow for the pace): the run then settles and audits what it did.
    limit_s: float = float("inf")


class Driver:
    def __init__(self, url: str, plan: Plan, record: Record, api: Api, menu: list[int]) -> None:
        self.url = url
        self.plan = plan
        self.record = record
        self.api = api
        self.menu = menu
        self.next_ticket = 0
        self.ticket_lock = threading.Lock()
        self.stop = threading.Event()
        self.started = 0.0

    # --- pacing -------------------------------------------------------------------------------

    def _ticket(self) -> int | None:
        late = time.monotonic() > self.started + self.plan.limit_s
        with self.ticket_lock:
            if self.next_ticket >= self.plan.checkouts or self.stop.is_set() or late:
                return None
            self.next_ticket += 1
            return self.next_ticket - 1

    def run(self) -> None:
        self.started = time.monotonic()
        threads = [
            threading.Thread(target=self._client, name=f"client-{n}", daemon=True)
            for n in range(self.plan.clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _client(self) -> None:
        interval = self.plan.seconds / max(self.plan.checkouts, 1)
        while (ticket := self._ticket()) is not None:
            delay = self.started + ticket * interval - time.monotonic()
            if delay > 0 and self.stop.wait(delay):
                return
            rng = random.Random(self.plan.seed * 1_000_003 + ticket)
            try:
                self._turn(rng, ticket)
            except GaveUp as error:
                with self.record.lock:
                    self.record.gave_up.append(str(error))

    # --- one turn: maybe a new customer, maybe a deposit, a checkout, maybe a cancellation ----

    def _turn(self, rng: random.Random, ticket: int) -> None:
        customer = self._customer(rng, ticket)
        if customer is None:
            return
        if not customer.opened:
            self._look_for_account(customer)
        if customer.opened and (not customer.deposits or rng.random() < 0.35):
            self._deposit(customer, rng.randint(1, 8) * 1000)
        self._checkout(customer, rng)
        if rng.random() < 0.25:
            self._cancel(rng)

    def _customer(self, rng: random.Random, ticket: int) -> Customer | None:
        with self.record.lock:
            known = list(self.record.customers.values())
        every = max(1, self.plan.checkouts // self.plan.customers)
        if len(known) < self.plan.customers and (ticket % every == 0 or not known):
            return self._sign_up()
        opened = [c for c in known if c.opened] or known
        return rng.choice(opened)

    def _sign_up(self) -> Customer | None:
        email = f"chaos-{uuid.uuid4().hex[:12]}@example.com"
        response = self.api.call(
            "POST",
            "/api/v1/customers",
            body={"name": "Chaos", "email": email, "password": PASSWORD},
        )
        if response.status_code != 201:
            self.record.refuse("sign-up", response)
            return None
        customer = Customer(str(response.json()["id"]), Login(self.api, email, PASSWORD))
        with self.record.lock:
            self.record.customers[customer.id] = customer
        return customer

    def _look_for_account(self, customer: Customer) -> None:
        customer.opened = (
            customer.login.call("GET", f"/api/v1/accounts/{customer.id}").status_code == 200
        )

    def _deposit(self, customer: Customer, amount: int) -> None:
        response = customer.login.call(
            "POST", f"/api/v1/accounts/{customer.id}/deposits", {"amount": amount}
        )
        if response.status_code == 201:
            with self.record.lock:
                customer.deposits[str(response.json()["entry_id"])] = amount
        else:
            self.record.refuse("deposit", response)

    def _checkout(self, customer: Customer, rng: random.Random) -> None:
        items = [
            {"menu_item_id": rng.choice(self.menu), "quantity": rng.randint(1, 3)}
            for _ in range(rng.randint(1, 3))
        ]
        if rng.random() < 0.03:  # a stale client: rejected unknown_menu_item
            items[0]["menu_item_id"] = max(self.menu) + 1000
        response = customer.login.call("POST", "/api/v1/checkouts", {"items": items})
        if response.status_code == 202:
            body = response.json()
            with self.record.lock:
                self.record.checkouts[body["id"]] = body
        else:
            self.record.refuse("checkout", response)

    def _cancel(self, rng: random.Random) -> None:
        with self.record.lock:
            placed = list(self.record.checkouts.values())
        if not placed:
            return
        target = rng.choice(placed)
        owner = self.record.customers[target["customer_id"]]
        response = owner.login.call(
            "POST", "/api/v1/cancellations", {"order_id": target["order_id"]}
        )
        if response.status_code == 202:
            body = response.json()
            with self.record.lock:
                self.record.cancellations[body["id"]] = body
        else:
            self.record.refuse("cancellation", response)
