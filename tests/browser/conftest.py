"""A phone-sized page, and `Checks`, which every subscriber journey runs on each page it
visits. The session's Chromium (`browser`, `page`) comes from tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.notifications.conftest import receiver  # noqa: F401 - a webhook receiver on loopback

AXE = ROOT / "portal/static/portal/vendor/axe-core/axe.min.js"
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def phone(browser):
    # Tests inject axe-core as a script; a Content-Security-Policy must not stop it.
    context = browser.new_context(viewport=PHONE, bypass_csp=True, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


class Checks:
    """Every page visited: accessible, not wider than the window, photographed."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.shots = folder, 0

    def page(self, page, name: str, *, width: int = PHONE["width"]) -> None:
        assert page.title(), f"{name} has no title"
        assert page.locator("main").count() == 1, f"{name} has no <main> landmark"
        page.add_script_tag(path=str(AXE))
        result = page.evaluate("async () => await axe.run(document)")
        bad = [
            f"{v['id']} ({v['impact']}): {v['nodes'][0]['target']}"
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert not bad, f"{name}: {bad}"
        self.wide(page, name, width=width)

    def wide(self, page, name: str, *, width: int) -> None:
        scroll = page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= width, f"{name} is {scroll} px wide at {width} px"
        self.shots += 1
        page.screenshot(path=str(self.folder / f"{self.shots:02d}-{name}.png"), full_page=True)
