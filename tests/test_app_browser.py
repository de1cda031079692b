"""A real browser on the real app: Debian's chromium driven by Playwright (no browser download).

The app runs from a copy of app.py and examples/ with the bundled DCGAN and map2sat generator and no
sat2map model, so it must show its notice for that one. The tests open the page, press the per-class
overview, generate scenes, walk the latent space, click an example thumbnail (which fills the upload
and the direction) and translate it, upload a file (its preview appears), and generate a scene with its
map; screenshots go to tests/artifacts/ (git-ignored; only the drawn examples are uploaded).
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
    env = {"RSGAN_DCGAN_MODEL": str(ROOT / "pretrained" / "dcgan"), "RSGAN_SAT2MAP_MODEL": "",
           "RSGAN_MAP2SAT_MODEL": str(ROOT / "pretrained" / "map2sat")}
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


def natural_size(locator) -> tuple[int, int]:
    return tuple(locator.evaluate("img => [img.naturalWidth, img.naturalHeight]"))


def test_notice_overview_and_generate(page):
    from playwright.sync_api import expect

    expect.set_options(timeout=90_000)  # model calls on a shared 2-core CPU
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    expect(page.locator("#untrained-notice")).to_contain_text("No trained weights found for: Satellite → Map")
    page.screenshot(path=ARTIFACTS / "app_start.png", full_page=True)

    # The first button on the page: one row per class for a spread of 8 of the 30 classes, 8 scenes each.
    expect(page.locator("#overview-button")).to_have_text("Show one row per class")
    buttons = page.locator("button:visible").evaluate_all("buttons => buttons.map(b => b.id)")
    assert buttons.index("overview-button") < buttons.index("generate-button")
    page.locator("#overview-button").click()
    overview = page.locator("#overview-image img")
    expect(overview).to_be_visible()
    width, height = natural_size(overview)
    assert height == 8 * 130 + 2 and width > 8 * 130 + 2  # 8 rows of 128 px scenes, labels on the left
    page.screenshot(path=ARTIFACTS / "app_overview.png", full_page=True)

    # Generate: 16 scenes by default; the gallery fills and the zip is offered.
    page.locator("#generate-button").click()
    expect(page.locator("#generate-gallery img")).to_have_count(16)
    expect(page.get_by_role("cell", name="scenes_Airport_seed0.zip")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "app_generate.png", full_page=True)

    # Explore: a latent walk appears as an animated GIF.
    page.get_by_role("tab", name="Explore").click()
    page.locator("#walk-button").click()
    expect(page.locator("#walk-gif img[src*='.gif']")).to_be_visible()


def test_example_thumbnail_fills_the_inputs_and_translates(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Satellite ⇄ Map").click()
    thumbnails = page.locator("#translate-examples img")
    expect(thumbnails).to_have_count(2)  # drawn_map (Map → Satellite), drawn_scene (Satellite → Map)
    page.screenshot(path=ARTIFACTS / "app_translate_examples.png", full_page=True)
    thumbnails.first.click()
    expect(page.locator("#translate-upload")).to_contain_text(re.compile(r"drawn_map\s*\.png"))
    expect(page.get_by_role("radio", name="Map → Satellite")).to_be_checked()
    expect(page.locator("#translate-preview img")).to_be_visible()  # the preview of what will be translated
    assert natural_size(page.locator("#translate-preview img")) == (512, 512)
    page.locator("#translate-button").click()
    expect(page.get_by_role("cell", name="drawn_map_satellite.png")).to_be_visible()
    expect(page.locator("#translate-slider img").first).to_be_visible()
    expect(page.locator(".toast-body.error")).to_have_count(0)
    page.screenshot(path=ARTIFACTS / "app_translate_example.png", full_page=True)


def test_upload_preview_and_translate(page):
    from playwright.sync_api import expect

    page.locator("#translate-upload").get_by_role("button", name="Clear").click()  # the example's file
    expect(page.locator("#translate-preview img")).to_have_count(0)
    page.get_by_role("radio", name="Satellite → Map").check()
    page.locator("#translate-upload input[type=file]").set_input_files(ROOT / "examples" / "drawn_scene.png")
    # Gradio renders the name's stem and extension in separate elements, so allow white space between them
    expect(page.locator("#translate-upload")).to_contain_text(re.compile(r"drawn_scene\s*\.png"))
    expect(page.locator("#translate-preview img")).to_be_visible()
    page.locator("#translate-button").click()
    expect(page.get_by_role("cell", name="drawn_scene_map.png")).to_be_visible()
    expect(page.locator(".toast-body.error")).to_have_count(0)
    page.screenshot(path=ARTIFACTS / "app_translate.png", full_page=True)


def test_scene_and_map_are_shown_large(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Scene + map").click()
    page.locator("#scene-map-button").click()
    expect(page.get_by_role("cell", name="map.png")).to_be_visible()
    for elem_id in ("#scene-map-scene", "#scene-map-map"):
        image = page.locator(f"{elem_id} img")
        expect(image).to_be_visible()
        assert natural_size(image) == (512, 512)  # 128 px, enlarged 4x (nearest neighbour)
        assert image.bounding_box()["width"] >= 400  # and shown large
    expect(page.get_by_role("cell", name="scene.png")).to_be_visible()  # the native-size downloads
    page.screenshot(path=ARTIFACTS / "app_scene_map.png", full_page=True)
