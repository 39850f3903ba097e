"""`{% chart config %}`: a canvas and its data; catalog/charts.js draws it."""

from __future__ import annotations

from django import template
from django.utils.html import json_script

from catalog.charts import Chart

register = template.Library()


@register.inclusion_tag("catalog/chart.html")
def chart(config: Chart, height: int = 280) -> dict:
    return {
        "chart": config,
        "height": height,
        "data": json_script(config.config(), f"{config.element_id}-data"),
    }


@register.inclusion_tag("catalog/chart_scripts.html")
def chart_scripts() -> dict:
    """The two scripts, once per page that has charts."""
    return {}
