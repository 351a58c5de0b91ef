"""Page-number pagination of the public API: ``page`` and ``page_size`` (default 50, capped at 200)."""

from __future__ import annotations

import re

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request

# ASCII digits only, and few enough that int() is cheap: str.isdigit() also passes "²" or
# "٣", which int() refuses (or accepts as another number).
_POSITIVE = re.compile(r"0*[1-9][0-9]{0,8}")


def _positive(raw: str, name: str) -> int:
    if not _POSITIVE.fullmatch(raw):
        raise ValidationError({name: ["Must be a positive integer."]})
    return int(raw)


class Pagination(PageNumberPagination):
    page_size = 50
    max_page_size = 200
    page_size_query_param = "page_size"

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        return min(_positive(raw, "page_size"), self.max_page_size)

    def get_page_number(self, request: Request, paginator: object) -> int | str:
        raw = request.query_params.get(self.page_query_param, "1")
        if raw in self.last_page_strings:
            return raw
        return _positive(raw, "page")
