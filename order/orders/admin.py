from django.contrib import admin

from common.admin import ReadOnlyAdmin
from order.orders.models import MenuItem, Order, OrderLine, UndoneCancellation


@admin.register(MenuItem)
class MenuItemAdmin(admin.ModelAdmin):
    """The menu is reference data that operators maintain by hand."""

    list_display = ("id", "name", "kind", "price", "available")
    list_filter = ("kind", "available")
    list_editable = ("price", "available")
    search_fields = ("name",)


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    fields = ("menu_item_id", "name", "quantity", "unit_price")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ("id", "customer_id", "state", "total", "reason", "created_at", "updated_at")
    list_filter = ("state", "reason", "created_at")
    search_fields = ("id", "customer_id")
    date_hierarchy = "created_at"
    inlines = [OrderLineInline]


@admin.register(UndoneCancellation)
class UndoneCancellationAdmin(ReadOnlyAdmin):
    """Cancellations whose lock was undone: what an operator checks before resuming an undo."""

    list_display = ("saga_id", "order_id", "created_at")
    search_fields = ("saga_id", "order_id")
