"""Lists answer `count`, `next`, `previous`, `results`; `page` and `page_size` choose.

A `page_size` that is not a whole number from 1 up is refused (400) rather than quietly
replaced by the default; one above the maximum is cut to it.
"""

from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    page_size_query_description = "Results per page, 1 to 500 (more is cut to 500)."
    max_page_size = 500

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if size < 1 or not raw.strip().isdigit():
            raise ValidationError(
                {self.page_size_query_param: f"A whole number from 1 to {self.max_page_size}."}
            )
        return min(size, self.max_page_size)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if (
                parameter["name"] == self.page_size_query_param
                or parameter["name"] == self.page_query_param
            ):
                parameter["schema"] = {"type": "integer", "minimum": 1}
        return parameters
