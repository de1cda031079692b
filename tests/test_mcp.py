"""The Space as an MCP server: `python app.py` (which launches with `mcp_server=True`) on a free
localhost port, listed and called over streamable HTTP at /gradio_api/mcp/ with the `mcp` client.

Tiny models, as in test_app_server.py: a DCGAN with the classes Forest and River, both pix2pix
directions. What is checked is what an agent sees: the tools and their described arguments, images
back from a call, and the app's one-line error for bad input.
"""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_app_server import noise_png, running_app, save_tiny_models

TOOLS = {"generate", "class_overview", "explore", "translate", "scene_to_map"}


@pytest.fixture(scope="module")
def mcp_url(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("mcp")
    with running_app(workdir, env=save_tiny_models(workdir)) as (url, _):
        yield f"{url}/gradio_api/mcp/"


def with_session(url: str, work):
    """Run `await work(session)` in an initialised MCP client session on `url`."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def main():
        async with streamable_http_client(url) as (read, write, _), ClientSession(read, write) as session:
            await session.initialize()
            return await work(session)

    return asyncio.run(main())


def images_in(result) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(c.data))) for c in result.content if c.type == "image"]


def test_tools_are_listed_with_their_arguments_described(mcp_url):
    async def work(session):
        return (await session.list_tools()).tools

    tools = {tool.name: tool for tool in with_session(mcp_url, work)}
    assert set(tools) == TOOLS  # the page's plumbing (/compare, /pick_seed, ...) is not offered
    generate = tools["generate"]
    assert generate.description.startswith("Generate synthetic satellite scenes with the DCGAN.")
    arguments = generate.inputSchema["properties"]
    assert list(arguments) == ["class_name", "num_images", "seed", "truncation"]
    assert arguments["class_name"]["description"] == "the scene class: one of Forest, River."
    assert "from 1 to 64" in arguments["num_images"]["description"] and arguments["seed"]["type"] == "integer"
    for tool in tools.values():  # every argument of every tool says what it takes
        assert all(spec.get("description") for spec in tool.inputSchema["properties"].values()), tool.name
    assert "16.8 megapixels" in tools["translate"].inputSchema["properties"]["image"]["description"]
    assert "Forest, River" in tools["class_overview"].inputSchema["properties"]["classes"]["description"]


def test_generate_returns_images(mcp_url):
    progress = []

    async def on_progress(done, total, message):
        progress.append(message)

    async def work(session):
        arguments = {"class_name": "River", "num_images": 3, "seed": 5, "truncation": 0}
        good = await session.call_tool("generate", arguments, progress_callback=on_progress)
        plain = await session.call_tool("generate", arguments)  # no progress token
        overview = await session.call_tool("class_overview", {"classes": ["Forest", "River"], "per_class": 4,
                                                              "seed": 0, "truncation": 0})
        return good, plain, overview

    good, plain, overview = with_session(mcp_url, work)
    assert not good.isError and progress
    # each output on its own: the gallery as text with the files' URLs, the grid as an image, the zip's URL
    [grid] = images_in(good)
    assert grid.size == (3 * 66 + 2, 68)
    assert any(c.type == "text" and "scenes_River_seed5.zip" in c.text for c in good.content)
    # Without a progress token Gradio 6.31 returns a multi-output tool's result as one text, the files as URLs.
    assert not plain.isError and "/gradio_api/file=" in " ".join(c.text for c in plain.content if c.type == "text")
    [image] = images_in(overview)  # a single output is an image with or without a progress token
    assert image.height == 2 * 66 + 2 and image.width > 4 * 66 + 2  # two rows, a label column beside them


@pytest.mark.parametrize("tool, arguments, message", [
    # refused by the tool's schema (the classes are listed there), before the app is called
    ("generate", {"class_name": "Desert", "num_images": 1, "seed": 0, "truncation": 0},
     "'Desert' is not one of ['Forest', 'River']"),
    ("generate", {"class_name": "River", "num_images": 65, "seed": 0, "truncation": 0},
     "65 is greater than maximum value 64"),  # Gradio's check of the slider's range
    ("class_overview", {"classes": [], "per_class": 4, "seed": 0, "truncation": 0}, "choose at least one class"),
    ("translate", {"image": "data:image/png;base64," + base64.b64encode(b"not an image").decode(),
                   "direction": "sat2map"}, "not an image Pillow can read"),  # the app's own one-line errors
])
def test_bad_input_is_one_line(mcp_url, tool, arguments, message):
    async def work(session):
        return await session.call_tool(tool, arguments)

    result = with_session(mcp_url, work)
    assert result.isError
    [text] = [c.text for c in result.content if c.type == "text"]
    assert message in text and "\n" not in text.strip() and "Traceback" not in text


def test_translate_and_scene_to_map(mcp_url, tmp_path):
    noise_png(tmp_path / "scene.png", 96, 80)
    data_url = "data:image/png;base64," + base64.b64encode((tmp_path / "scene.png").read_bytes()).decode()

    async def work(session):
        translated = await session.call_tool("translate", {"image": data_url, "direction": "sat2map"})
        pair = await session.call_tool("scene_to_map", {"class_name": "Forest", "seed": 2, "truncation": 0},
                                       progress_callback=lambda *_: asyncio.sleep(0))
        return translated, pair

    translated, pair = with_session(mcp_url, work)
    assert not translated.isError and not pair.isError
    [drawn_map] = images_in(translated)
    assert drawn_map.size == (96, 80)
    assert any(c.type == "text" and Path(c.text.split()[-1]).name.endswith("_map.png") for c in translated.content)
    scene, scene_map = images_in(pair)
    assert scene.size == scene_map.size == (64, 64)
    assert not np.array_equal(np.asarray(scene.convert("RGB")), np.asarray(scene_map.convert("RGB")))
