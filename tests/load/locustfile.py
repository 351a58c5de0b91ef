"""`make load`: a mixed load on the gateway — reads, deposits and checkouts — with locust.

Each simulated client signs up a customer, logs in (every later call carries its access token),
waits for its account, funds it, then loops over the public API with the weights below. Locust
prints requests/s and latency percentiles.
"""

from __future__ import annotations

import random
import time
import uuid

from locust import HttpUser, between, task


class CafeClient(HttpUser):
    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        # (A random hex password would be "too similar" to the random hex e-mail.)
        email, password = f"{uuid.uuid4().hex}@example.com", "locust marmalade toast"
        created = self.client.post(
            "/api/v1/customers",
            json={"name": "Load", "email": email, "password": password},
            name="/api/v1/customers",
        )
        self.customer_id = created.json()["id"]
        login = self.client.post(
            "/api/v1/tokens", json={"username": email, "password": password}, name="/api/v1/tokens"
        )
        self.client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            # 404 until customer.registered has opened the account: expected, not a failure.
            with self.client.get(
                f"/api/v1/accounts/{self.customer_id}",
                name="/api/v1/accounts/[id] (opening)",
                catch_response=True,
            ) as response:
                if response.status_code == 404:
                    response.success()
                elif response.ok:
                    break
            time.sleep(0.05)
        self.client.post(
            f"/api/v1/accounts/{self.customer_id}/deposits",
            json={"amount": 10_000_000},
            name="/api/v1/accounts/[id]/deposits",
        )
        self.menu = [item["id"] for item in self.client.get("/api/v1/menu").json()]
        self.checkouts: list[str] = []

    @task(5)
    def read_menu(self) -> None:
        self.client.get("/api/v1/menu")

    @task(3)
    def read_account(self) -> None:
        self.client.get(f"/api/v1/accounts/{self.customer_id}", name="/api/v1/accounts/[id]")

    @task(2)
    def checkout(self) -> None:
        items = [{"menu_item_id": random.choice(self.menu), "quantity": random.randint(1, 3)}]
        response = self.client.post(
            "/api/v1/checkouts",
            json={"items": items},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        if response.status_code == 202:
            self.checkouts.append(response.json()["id"])

    @task(2)
    def follow_checkout(self) -> None:
        if self.checkouts:
            self.client.get(
                f"/api/v1/checkouts/{random.choice(self.checkouts)}", name="/api/v1/checkouts/[id]"
            )

    @task(1)
    def list_orders(self) -> None:
        self.client.get(
            f"/api/v1/orders?customer_id={self.customer_id}", name="/api/v1/orders?customer_id"
        )

    @task(1)
    def deposit(self) -> None:
        self.client.post(
            f"/api/v1/accounts/{self.customer_id}/deposits",
            json={"amount": random.randint(1, 1000)},
            name="/api/v1/accounts/[id]/deposits",
        )
