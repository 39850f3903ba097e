"""Lists answer `count`, `next`, `previous`, `results`; `page` and `page_size` choose."""

from __future__ import annotations

from rest_framework.pagination import PageNumberPagination


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    page_size_query_description = "Results per page, at most 500."
    max_page_size = 500
