from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from common.admin import ReadOnlyAdmin, seconds
from common.auth.principal import Principal
from customer.customers.models import Customer
from customer.customers.services import customer_block, customer_unblock


@admin.register(Customer)
class CustomerAdmin(ReadOnlyAdmin):
    """Read-only: a customer changes through the use-cases (block, unblock) and is never deleted
    here, which would orphan its account and orders in the other services."""

    list_display = ("name", "email", "status", "created")
    list_filter = ("status", "created_at")
    search_fields = ("name", "email", "id")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    readonly_fields = ("id", "name", "email", "status", "created_at", "updated_at")
    exclude = ("password",)
    actions = ["block", "unblock"]

    @admin.display(description="created (UTC)", ordering="created_at")
    def created(self, customer: Customer) -> str:
        return seconds(customer.created_at)

    @admin.action(description="Block selected customers")
    def block(self, request: HttpRequest, queryset: QuerySet[Customer]) -> None:
        operator = Principal.for_operator(request.user.get_username())
        for customer_id in queryset.values_list("pk", flat=True):
            customer_block(actor=operator, customer_id=customer_id)
        self.message_user(request, f"Blocked {queryset.count()} customer(s).", messages.SUCCESS)

    @admin.action(description="Unblock selected customers")
    def unblock(self, request: HttpRequest, queryset: QuerySet[Customer]) -> None:
        operator = Principal.for_operator(request.user.get_username())
        for customer_id in queryset.values_list("pk", flat=True):
            customer_unblock(actor=operator, customer_id=customer_id)
        self.message_user(request, f"Unblocked {queryset.count()} customer(s).", messages.SUCCESS)
