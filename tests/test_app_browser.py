"""A real browser on the real app: Debian's chromium driven by Playwright (no browser download).

The app runs from a copy of app.py and examples/ in a folder without pretrained/, so it takes the
fresh-network path and must show its notice. The test opens the page, generates scenes, walks the
latent space, uploads an example for translation, waits for the results, and saves screenshots to
tests/artifacts/.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from test_app_server import ROOT, running_app

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

if not CHROMIUM.exists():
    if os.environ.get("CI"):  # .ci/run installs chromium: its absence in CI is a failure, not a skip
        pytest.fail(f"{CHROMIUM} is missing in CI; .ci/run should have installed Debian's chromium", pytrace=False)
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("browser")
    shutil.copy(ROOT / "app.py", workdir / "app.py")
    shutil.copytree(ROOT / "examples", workdir / "examples")
    env = {k: "" for k in ("RSGAN_DCGAN_MODEL", "RSGAN_SAT2MAP_MODEL", "RSGAN_MAP2SAT_MODEL")}
    with running_app(workdir, env=env, app=workdir / "app.py") as (url, _):
        yield url


@pytest.fixture(scope="module")
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(90_000)
        page.goto(app_url)
        yield page
        browser.close()


def test_notice_generate_and_translate_in_the_browser(page):
    from playwright.sync_api import expect

    expect.set_options(timeout=90_000)  # model calls on a shared 2-core CPU
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    expect(page.locator("#untrained-notice")).to_contain_text("No trained weights found")
    page.screenshot(path=ARTIFACTS / "app_start.png", full_page=True)

    # Generate: 16 scenes by default; the gallery fills and the zip is offered.
    page.locator("#generate-button").click()
    expect(page.locator("#generate-gallery img")).to_have_count(16)
    expect(page.get_by_role("cell", name="scenes_seed0.zip")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "app_generate.png", full_page=True)

    # Explore: a latent walk appears as an animated GIF.
    page.get_by_role("tab", name="Explore").click()
    page.locator("#walk-button").click()
    expect(page.locator("#walk-gif img[src*='.gif']")).to_be_visible()

    # Translate: upload the drawn example scene, translate, wait for the comparison and the downloads.
    page.get_by_role("tab", name="Satellite ⇄ Map").click()
    page.locator("#translate-upload input[type=file]").set_input_files(ROOT / "examples" / "drawn_scene.png")
    # Gradio renders the name's stem and extension in separate elements, so allow white space between them
    expect(page.locator("#translate-upload")).to_contain_text(re.compile(r"drawn_scene\s*\.png"))
    page.locator("#translate-button").click()
    expect(page.get_by_role("cell", name="drawn_scene_map.png")).to_be_visible()
    expect(page.locator("#translate-slider img").first).to_be_visible()
    expect(page.locator(".toast-body.error")).to_have_count(0)
    page.screenshot(path=ARTIFACTS / "app_translate.png", full_page=True)
