"""The page-part registry: apps add panels and columns; pages render what is there."""

from __future__ import annotations

import pytest

from catalog import registry
from catalog.registry import Column, Panel


@pytest.fixture
def clean_place(monkeypatch):
    """A place with nothing registered, restored after the test."""
    monkeypatch.setitem(registry._panels, registry.DATASET_PAGE, {})
    monkeypatch.setitem(registry._columns, registry.HEALTH_DASHBOARD, {})


def _panel(name, context, order=100):
    return Panel(
        name=name,
        title=name.title(),
        template="catalog/tests/panel.html",
        context=context,
        order=order,
    )


def test_panels_render_in_order_and_leave_out_those_with_nothing_to_show(clean_place, dataset):
    registry.panel_register(registry.DATASET_PAGE, _panel("b", lambda r, d: {"text": d.name}))
    registry.panel_register(registry.DATASET_PAGE, _panel("a", lambda r, d: {"text": "A"}, 1))
    registry.panel_register(registry.DATASET_PAGE, _panel("hidden", lambda r, d: None))

    rendered = registry.panels_render(registry.DATASET_PAGE, request=None, dataset=dataset)

    assert [p.name for p in rendered] == ["a", "b"]
    assert rendered[1].html.strip() == "<p>txn_daily</p>"


def test_a_failing_panel_is_left_out_and_the_others_still_render(clean_place, dataset, caplog):
    def broken(request, dataset):
        raise RuntimeError("replica table unreachable")

    registry.panel_register(registry.DATASET_PAGE, _panel("broken", broken))
    registry.panel_register(registry.DATASET_PAGE, _panel("fine", lambda r, d: {"text": "ok"}))

    rendered = registry.panels_render(registry.DATASET_PAGE, request=None, dataset=dataset)

    assert [p.name for p in rendered] == ["fine"]
    assert "'broken' panel failed" in caplog.text


def test_registering_a_name_again_replaces_the_panel(clean_place, dataset):
    registry.panel_register(registry.DATASET_PAGE, _panel("x", lambda r, d: {"text": "old"}))
    registry.panel_register(registry.DATASET_PAGE, _panel("x", lambda r, d: {"text": "new"}))

    rendered = registry.panels_render(registry.DATASET_PAGE, request=None, dataset=dataset)

    assert [p.html.strip() for p in rendered] == ["<p>new</p>"]


def test_columns_give_one_value_per_dataset_and_none_where_they_have_none(
    clean_place, dataset, acme, system
):
    from catalog.services import dataset_create

    other = dataset_create(organization=acme, layer="gold", name="other", actor=system)
    registry.column_register(
        registry.HEALTH_DASHBOARD,
        Column(name="subs", title="Subscribers", values=lambda ds: {dataset.pk: 3}),
    )
    registry.column_register(
        registry.HEALTH_DASHBOARD,
        Column(name="broken", title="Broken", values=lambda ds: 1 / 0),
    )

    table = registry.columns_collect(registry.HEALTH_DASHBOARD, [dataset, other])

    assert [c.name for c in table.columns] == ["subs"]
    assert table.row(dataset) == [3]
    assert table.row(other) == [None]


def test_an_unknown_place_is_refused():
    with pytest.raises(ValueError, match="Unknown page place 'sidebar'"):
        registry.panel_register("sidebar", _panel("x", lambda r, d: {}))
