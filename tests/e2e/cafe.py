"""A client of the public API (through the gateway only) and the Outcomes of DESIGN.md §7."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

TERMINAL = {"completed", "rejected", "failed"}
PASSWORD = "e2e correct horse battery"
OPERATOR = ("admin", "e2e-admin")  # the e2e stack's admin user, a staff user: an operator


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Cafe:
    """``http`` carries an operator's token (reads everything); each customer signs up, logs in
    and then deposits, checks out and cancels with their own token."""

    http: httpx.Client
    checkouts: list[dict[str, Any]] = field(default_factory=list)
    cancellations: list[dict[str, Any]] = field(default_factory=list)
    customers: set[str] = field(default_factory=set)
    tokens: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if "Authorization" not in self.http.headers:
            username, password = OPERATOR
            login = self.http.post(
                "/api/v1/tokens", json={"username": username, "password": password}
            )
            assert login.status_code == 200, login.text
            self.http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"

    def sign_up(self, email: str | None = None) -> tuple[str, str]:
        """A new customer and their access token."""
        email = email or f"{uuid.uuid4().hex}@example.com"
        response = self.http.post(
            "/api/v1/customers", json={"name": "E2E", "email": email, "password": PASSWORD}
        )
        assert response.status_code == 201, response.text
        customer_id = str(response.json()["id"])
        login = self.http.post("/api/v1/tokens", json={"username": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        self.tokens[customer_id] = login.json()["access_token"]
        return customer_id, self.tokens[customer_id]

    def as_customer(self, customer_id: str | None) -> dict[str, str]:
        """The customer's own token; for one this client never signed up (an unknown id), none:
        the request goes with the operator's token of ``http``."""
        token = self.tokens.get(customer_id or "")
        return bearer(token) if token else {}

    def customer(self, *, deposit: int = 0) -> str:
        customer_id, token = self.sign_up()
        self.customers.add(customer_id)
        deadline = time.monotonic() + 10
        while (
            self.http.get(f"/api/v1/accounts/{customer_id}", headers=bearer(token)).status_code
            != 200
        ):
            assert time.monotonic() < deadline, "account not opened"
            time.sleep(0.02)
        if deposit:
            assert (
                self.http.post(
                    f"/api/v1/accounts/{customer_id}/deposits",
                    json={"amount": deposit},
                    headers=bearer(token),
                ).status_code
                == 201
            )
        return customer_id

    def checkout(
        self, customer_id: str, items: list[dict[str, int]], key: str | None = None
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": key} if key else {}
        # As the contract asks of a client: a 503 `overloaded` started nothing, so it is sent
        # again after its Retry-After (a busy CI machine trips admission control now and then).
        give_up = time.monotonic() + 60
        while True:
            response = self.http.post(
                "/api/v1/checkouts",
                json={"customer_id": customer_id, "items": items},
                headers={**headers, **self.as_customer(customer_id)},
            )
            if response.status_code != 503 or time.monotonic() > give_up:
                break
            assert response.json()["code"] == "overloaded", response.text
            time.sleep(int(response.headers["retry-after"]))
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()
        assert response.headers["location"] == f"/api/v1/checkouts/{body['id']}"
        self.checkouts.append(body)
        return body

    def checkout_unless_shed(
        self, customer_id: str, items: list[dict[str, int]]
    ) -> dict[str, Any] | None:
        """A checkout, or None if the system is behind and refused it (503 ``overloaded``, with
        ``Retry-After``: nothing was started)."""
        response = self.http.post(
            "/api/v1/checkouts",
            json={"customer_id": customer_id, "items": items},
            headers=self.as_customer(customer_id),
        )
        if response.status_code == 503:
            assert response.json()["code"] == "overloaded", response.text
            assert int(response.headers["retry-after"]) >= 1
            return None
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()
        self.checkouts.append(body)
        return body

    def cancel(self, order_id: str) -> dict[str, Any]:
        """Cancel as the customer who placed the order (as an operator if it was not ours)."""
        owner = next((c["customer_id"] for c in self.checkouts if c["order_id"] == order_id), None)
        headers = self.as_customer(owner)
        response = self.http.post(
            "/api/v1/cancellations", json={"order_id": order_id}, headers=headers
        )
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()
        self.cancellations.append(body)
        return body

    def wait(self, saga: dict[str, Any], timeout_s: float = 60.0) -> dict[str, Any]:
        kind = "cancellations" if "customer_id" not in saga else "checkouts"
        deadline = time.monotonic() + timeout_s
        while True:
            current: dict[str, Any] = self.http.get(f"/api/v1/{kind}/{saga['id']}").json()
            if current["state"] in TERMINAL:
                return current
            assert time.monotonic() < deadline, f"{kind} {saga['id']} still {current['state']}"
            time.sleep(0.05)

    def wait_all(self, timeout_s: float = 120.0) -> list[dict[str, Any]]:
        return [self.wait(s, timeout_s) for s in [*self.checkouts, *self.cancellations]]

    def pages(self, path: str) -> Iterator[dict[str, Any]]:
        url: str | None = f"{path}{'&' if '?' in path else '?'}page_size=200"
        while url:
            page = self.http.get(url).json()
            yield from page["results"]
            url = page["next"]

    def balance(self, customer_id: str) -> int:
        return int(self.http.get(f"/api/v1/accounts/{customer_id}").json()["balance"])

    def order(self, order_id: str) -> dict[str, Any] | None:
        response = self.http.get(f"/api/v1/orders/{order_id}")
        return response.json() if response.status_code == 200 else None

    def assert_outcomes(self) -> None:
        """DESIGN.md §7 "Outcomes a client can rely on", for everything this client did."""
        for customer_id in self.customers:
            entries = list(self.pages(f"/api/v1/accounts/{customer_id}/entries"))
            orders = list(self.pages(f"/api/v1/orders?customer_id={customer_id}"))
            deposits = sum(e["amount"] for e in entries if e["kind"] == "deposit")
            held = sum(o["total"] for o in orders if o["state"] in {"approved", "cancel_pending"})
            balance = self.balance(customer_id)
            assert balance >= 0
            assert balance == deposits - held, f"{customer_id}: {balance} != {deposits} - {held}"
            charged: dict[str, int] = {}
            for entry in entries:
                if entry["order_id"]:
                    charged[entry["order_id"]] = charged.get(entry["order_id"], 0) + entry["amount"]
            for o in orders:
                net = -charged.get(o["id"], 0)
                expected = o["total"] if o["state"] in {"approved", "cancel_pending"} else 0
                assert net == expected, (
                    f"order {o['id']} ({o['state']}) net charge {net}, expected {expected}"
                )
                charges = [e for e in entries if e["order_id"] == o["id"] and e["kind"] == "charge"]
                assert len(charges) <= 1
        for checkout in self.checkouts:
            final = self.wait(checkout)
            order = self.order(final["order_id"])
            if final["state"] == "completed":
                assert order is not None and order["state"] in {
                    "approved",
                    "cancel_pending",
                    "cancelled",
                }
            elif final["state"] == "rejected":
                assert order is None or order["state"] == "rejected"
            else:
                raise AssertionError(f"checkout {final['id']} ended {final['state']}")
        for cancellation in self.cancellations:
            final = self.wait(cancellation)
            order = self.order(final["order_id"])
            assert order is not None
            if final["state"] == "completed":
                assert order["state"] == "cancelled"
            else:
                assert final["state"] == "rejected", final
                assert order["state"] != "cancelled" or any(
                    c["order_id"] == final["order_id"] and self.wait(c)["state"] == "completed"
                    for c in self.cancellations
                )
