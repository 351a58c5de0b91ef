"""A client of the public API that rides out faults the way a careful client would: every POST
carries an ``Idempotency-Key`` and is sent again with the same key after a connection error, a
5xx, a 429 or a 503 (honouring ``Retry-After``), until it gets an answer or its time is up."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

RETRIED = {429, 500, 502, 503, 504}


@dataclass
class Tally:
    """What the clients saw, for the report: answers by status, transport errors, retries."""

    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)  # 500s: the contract says never
    lock: threading.Lock = field(default_factory=threading.Lock)

    def saw(self, method: str, path: str, response: httpx.Response | None, error: str = "") -> None:
        with self.lock:
            if response is None:
                self.errors[error] += 1
                return
            self.statuses[response.status_code] += 1
            if response.status_code == 500 and len(self.server_errors) < 20:
                self.server_errors.append(f"{method} {path}: {response.text[:200]}")


class GaveUp(Exception):
    """No answer other than a retryable failure within the call's time."""


class Api:
    def __init__(self, url: str, tally: Tally, *, call_timeout_s: float = 120.0) -> None:
        self.http = httpx.Client(base_url=url, timeout=10.0)
        self.tally = tally
        self.call_timeout_s = call_timeout_s

    def close(self) -> None:
        self.http.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        """The first answer that is not a retryable failure. POSTs carry one Idempotency-Key
        for all their tries (unless ``idempotent`` is False: a login has no effect to repeat)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if method == "POST" and idempotent:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        deadline = time.monotonic() + self.call_timeout_s
        pause = 0.1
        while True:
            response: httpx.Response | None
            try:
                response = self.http.request(method, path, json=body, headers=headers)
            except httpx.TransportError as error:
                self.tally.saw(method, path, None, type(error).__name__)
                response = None
            else:
                self.tally.saw(method, path, response)
                if response.status_code not in RETRIED:
                    return response
            answer = "no answer" if response is None else str(response.status_code)
            if time.monotonic() + pause > deadline:
                raise GaveUp(f"{method} {path}: {answer}")
            wait = pause
            if response is not None and response.headers.get("retry-after", "").isdigit():
                wait = max(wait, float(response.headers["retry-after"]))
            time.sleep(wait)
            pause = min(pause * 2, 2.0)

    def login(self, username: str, password: str) -> str:
        response = self.call(
            "POST",
            "/api/v1/tokens",
            body={"username": username, "password": password},
            idempotent=False,
        )
        if response.status_code != 200:
            raise GaveUp(f"login of {username}: {response.status_code} {response.text[:200]}")
        token: str = response.json()["access_token"]
        return token

    def pages(self, path: str, token: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        url: str | None = f"{path}{'&' if '?' in path else '?'}page_size=200"
        while url:
            response = self.call("GET", url, token=token)
            response.raise_for_status()
            page = response.json()
            found += page["results"]
            url = page["next"]
        return found


@dataclass
class Login:
    """A caller's credentials and current token, logged in again when the token expires."""

    api: Api
    username: str
    password: str
    token: str = ""

    def call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        if not self.token:
            self.token = self.api.login(self.username, self.password)
        response = self.api.call(method, path, token=self.token, body=body)
        if response.status_code == 401:
            self.token = self.api.login(self.username, self.password)
            response = self.api.call(method, path, token=self.token, body=body)
        return response

    def pages(self, path: str) -> list[dict[str, Any]]:
        try:
            return self.api.pages(path, self.token)
        except httpx.HTTPStatusError as error:
            if error.response.status_code != 401:
                raise
            self.token = self.api.login(self.username, self.password)
            return self.api.pages(path, self.token)
