"""Write use-cases of the order service. Order states change only here."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction

from order.orders.models import MenuItem, Order, OrderLine


@dataclass(frozen=True)
class LineRequest:
    menu_item_id: int
    quantity: int


def order_create_pending(
    *, order_id: uuid.UUID, customer_id: uuid.UUID, items: Sequence[LineRequest]
) -> Order:
    """Create the order as ``pending`` with prices from the menu.

    Idempotent on ``order_id``: creating it again returns the order as it is. An item not on
    the menu stores the order as ``rejected`` with reason ``unknown_menu_item``, so the
    customer can still see what was refused and why.
    """
    with transaction.atomic():
        existing = Order.objects.filter(pk=order_id).first()
        if existing is not None:
            return existing
        menu = MenuItem.objects.in_bulk({line.menu_item_id for line in items})
        known = all(
            line.menu_item_id in menu and menu[line.menu_item_id].available for line in items
        )
        order = Order.objects.create(
            id=order_id,
            customer_id=customer_id,
            state=Order.State.PENDING if known else Order.State.REJECTED,
            reason=None if known else "unknown_menu_item",
        )
        lines = [
            OrderLine(
                order=order,
                menu_item_id=line.menu_item_id,
                name=menu[line.menu_item_id].name,
                quantity=line.quantity,
                unit_price=menu[line.menu_item_id].price,
            )
            for line in items
            if line.menu_item_id in menu
        ]
        OrderLine.objects.bulk_create(lines)
        order.total = sum(line.quantity * line.unit_price for line in lines) if known else 0
        order.save(update_fields=["total"])
    return order
