"""Page-number pagination of the public API: ``page`` and ``page_size`` (default 50, capped at 200)."""

from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request


class Pagination(PageNumberPagination):
    page_size = 50
    max_page_size = 200
    page_size_query_param = "page_size"

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not raw.isdigit() or int(raw) < 1:
            raise ValidationError({"page_size": ["Must be a positive integer."]})
        return min(int(raw), self.max_page_size)

    def get_page_number(self, request: Request, paginator: object) -> int | str:
        raw = request.query_params.get(self.page_query_param, "1")
        if raw in self.last_page_strings:
            return raw
        if not raw.isdigit() or int(raw) < 1:
            raise ValidationError({"page": ["Must be a positive integer."]})
        return raw
