from django.contrib import admin

from account.accounts.models import Account, LedgerEntry, OrderPayment
from common.admin import ReadOnlyAdmin


class EntryInline(admin.TabularInline):
    model = LedgerEntry
    fields = ("created_at", "kind", "amount", "order_id")
    readonly_fields = fields
    ordering = ("-created_at", "-id")
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ("customer_id", "balance", "currency", "opened_at", "updated_at")
    list_filter = ("opened_at",)
    search_fields = ("customer_id",)
    date_hierarchy = "opened_at"
    inlines = [EntryInline]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "account", "kind", "amount", "order_id", "created_at")
    list_filter = ("kind", "created_at")
    search_fields = ("account__customer_id", "order_id")
    date_hierarchy = "created_at"
    list_select_related = ("account",)


@admin.register(OrderPayment)
class OrderPaymentAdmin(ReadOnlyAdmin):
    list_display = ("order_id", "customer_id", "state", "amount", "created_at", "updated_at")
    list_filter = ("state", "created_at")
    search_fields = ("order_id", "customer_id")
    date_hierarchy = "created_at"
