"""The caller a verified token names, as use-cases and selectors receive it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from common.api.errors import BusinessError, NotFoundError


def forbidden(detail: str = "Only an operator may do this.") -> BusinessError:
    return BusinessError("forbidden", detail, status=403)


@dataclass(frozen=True)
class Principal:
    """A customer (``customer_id`` set) or an operator (``operator``), from a verified token.

    Every rule of DESIGN.md §7 "Identity and access" is one method here, so selectors and
    use-cases ask the principal instead of repeating the rule.
    """

    subject: str
    customer_id: uuid.UUID | None = None
    operator: bool = False
    scopes: frozenset[str] = field(default_factory=frozenset)

    # DRF's IsAuthenticated-style checks and Django's request.user protocol.
    is_authenticated = True
    is_anonymous = False

    @classmethod
    def for_customer(cls, customer_id: uuid.UUID) -> Principal:
        return cls(
            subject=str(customer_id), customer_id=customer_id, scopes=frozenset({"customer"})
        )

    @classmethod
    def for_operator(cls, subject: str) -> Principal:
        return cls(subject=subject, operator=True, scopes=frozenset({"operator"}))

    def owns(self, customer_id: uuid.UUID | None) -> bool:
        """Whether this caller may see and act on the records of ``customer_id``."""
        return self.operator or (customer_id is not None and customer_id == self.customer_id)

    def owner_filter(self, field: str = "customer_id") -> dict[str, Any]:
        """Query filter keeping only what this caller owns (nothing to filter for an operator):
        ``Order.objects.filter(**actor.owner_filter())``."""
        return {} if self.operator else {field: self.customer_id}

    def require_operator(self) -> None:
        if not self.operator:
            raise forbidden()

    def require_owner(self, customer_id: uuid.UUID | None, *, what: str, ident: object) -> None:
        """Another customer's record answers exactly like one that does not exist."""
        if not self.owns(customer_id):
            raise NotFoundError(what, ident)

    def acting_for(self, customer_id: uuid.UUID | None) -> uuid.UUID:
        """The customer a request acts for: a customer's own id (another id is refused with 403),
        or the id an operator names (required)."""
        if self.operator:
            if customer_id is None:
                raise BusinessError(
                    "validation_error",
                    "An operator must name the customer.",
                    errors={"customer_id": ["This field is required for an operator token."]},
                )
            return customer_id
        assert self.customer_id is not None
        if customer_id is not None and customer_id != self.customer_id:
            raise forbidden("A customer may only act for themselves.")
        return self.customer_id

    @property
    def key(self) -> str:
        """A stable name for the caller, e.g. to scope Idempotency-Keys."""
        return f"operator:{self.subject}" if self.operator else f"customer:{self.customer_id}"
