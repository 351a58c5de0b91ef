from django.contrib import admin

from common.idempotency.models import IdempotencyRecord


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(admin.ModelAdmin):
    list_display = ("key", "owner", "method", "path", "status_code", "created_at")
    list_filter = ("method", "status_code", "created_at")
    search_fields = ("key", "owner", "path")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in IdempotencyRecord._meta.fields]

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False
