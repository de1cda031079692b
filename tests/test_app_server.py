"""The real server: `python app.py` on a free localhost port, driven with gradio_client and raw HTTP.

One server per module, on tiny models: the DCGAN by Hub repo id from an offline HF cache, the two
pix2pix generators from folders. `running_app` is also used by the browser test and bench/load_app.py.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_dcgan, tiny_pix2pix
from rsgan_hub import DCGANGenerator, Pix2PixGenerator, generate_images
from rsgan_hub.pipelines import translate_image
from test_hub import put_in_hf_cache

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(workdir: Path, args: list[str] = (), env: dict | None = None, app: Path = ROOT / "app.py",
                timeout: float = 180):
    """Start `python app.py` on a free port in `workdir`; yield (url, process); stop it afterwards."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(workdir / "gradio"),
           **(env or {})}
    attempts = 3  # the free port can be taken by another process before the app binds it: try another

    def start():
        port = free_port()
        log = open(workdir / "server.log", "w")
        process = subprocess.Popen([sys.executable, str(app), "--port", str(port), *args], cwd=workdir, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        return process, log, f"http://127.0.0.1:{port}"

    process, log, url = start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                text = (workdir / "server.log").read_text()
                attempts -= 1
                if "Cannot find empty port" in text and attempts:
                    log.close()
                    process, log, url = start()
                    continue
                raise RuntimeError(f"app.py exited with {process.returncode}:\n{text}")
            try:
                with urllib.request.urlopen(url + "/gradio_api/info", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"app.py did not answer in {timeout} s:\n{(workdir / 'server.log').read_text()}")
            time.sleep(0.5)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def save_tiny_models(root: Path) -> dict[str, str]:
    """Tiny models for the app: env vars pointing at them (the DCGAN by repo id, offline)."""
    dcgan = tiny_dcgan(64, num_classes=2, class_names=["Forest", "River"])[0]
    dcgan.save_pretrained(root / "dcgan")
    put_in_hf_cache(root / "dcgan", root / "hub", "user/rs-dcgan")
    for direction in ("sat2map", "map2sat"):
        tiny_pix2pix(direction=direction)[0].save_pretrained(root / direction)
    return {"RSGAN_DCGAN_MODEL": "user/rs-dcgan", "RSGAN_SAT2MAP_MODEL": str(root / "sat2map"),
            "RSGAN_MAP2SAT_MODEL": str(root / "map2sat"), "HF_HUB_CACHE": str(root / "hub"), "HF_HUB_OFFLINE": "1"}


def noise_png(path: Path, width: int, height: int) -> np.ndarray:
    array = np.random.default_rng(width * height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    return array


MAX_PIXELS = 100_000
MAX_FILE_SIZE = 1_000_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("server")
    env = save_tiny_models(workdir)
    limits = ["--max-pixels", str(MAX_PIXELS), "--max-file-size", str(MAX_FILE_SIZE)]
    with running_app(workdir, limits, env) as (url, _):
        yield url, workdir


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    url, workdir = server
    return Client(url, verbose=False, download_files=str(workdir / "downloads"), analytics_enabled=False)


def test_every_event_is_named_in_the_api(client):
    """The model calls are documented (and MCP tools); the page's plumbing (/compare, /pick_seed, ...) is
    callable but undocumented, so an agent sees only the tools."""
    api = client.view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) == {"/generate", "/class_overview", "/explore", "/translate", "/scene_to_map"}
    assert api["unnamed_endpoints"] == {}


def test_generate(client, server):
    gallery, grid, zip_path = client.predict("River", 4, 3, 0.5, api_name="/generate")
    assert [item["caption"] for item in gallery] == ["seed 3", "seed 4", "seed 5", "seed 6"]
    expected = generate_images(DCGANGenerator.from_pretrained(server[1] / "dcgan"), 4, 3, "River", 0.5)
    for item, image in zip(gallery, expected):
        assert np.array_equal(np.asarray(Image.open(item["image"])), np.asarray(image))
    assert Image.open(grid).size == (4 * 66 + 2, 68)
    with zipfile.ZipFile(zip_path) as archive:
        assert len(archive.namelist()) == 4


def test_translate(client, server, tmp_path):
    from gradio_client import handle_file

    source = noise_png(tmp_path / "scene.png", 300, 200)
    out = client.predict(handle_file(tmp_path / "scene.png"), "sat2map", api_name="/translate")
    assert Path(out).name == "scene_map.png"
    expected = translate_image(Pix2PixGenerator.from_pretrained(server[1] / "sat2map"), source)
    assert np.array_equal(np.asarray(Image.open(out)), expected)
    # the page's follow-up call: previews and the PNG download
    pair, before, after, downloads = client.predict(handle_file(tmp_path / "scene.png"), handle_file(out),
                                                    api_name="/compare")
    assert Image.open(before).size == Image.open(after).size == (300, 200)
    assert [Path(p).name for p in downloads] == ["scene_map.png"]


def test_explore_and_scene_to_map(client):
    gif, strip = client.predict("Forest", 0, 5, 6, 0, api_name="/explore")
    assert Image.open(gif).n_frames == 10 and Image.open(strip).size == (6 * 66 + 2, 68)
    scene, drawn_map = client.predict("Forest", 5, 0, api_name="/scene_to_map")
    assert Image.open(scene).size == Image.open(drawn_map).size == (64, 64)


def test_bad_input_gives_a_message_and_the_queue_keeps_working(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "notes.txt").write_text("not an image")
    noise_png(tmp_path / "big.png", 400, 300)  # 120,000 pixels > MAX_PIXELS, under MAX_FILE_SIZE bytes
    cases = [
        ((handle_file(tmp_path / "notes.png"), "sat2map"), "/translate", "not an image Pillow can read"),
        ((handle_file(tmp_path / "notes.txt"), "sat2map"), "/translate", "Invalid file type"),
        ((handle_file(tmp_path / "big.png"), "map2sat"), "/translate", "400x300 = 0.1 megapixels, over the limit"),
        ((handle_file(tmp_path / "notes.png"), "sideways"), "/translate",
         "is not in the list of choices: ['sat2map', 'map2sat']"),
        (("River", 65, 0, 0), "/generate", "greater than maximum value 64"),
        (("Desert", 1, 0, 0), "/generate", "unknown class 'Desert'; known classes: Forest, River"),
        (("", 1, 0, 0), "/generate", "the model is class-conditional: choose one of Forest, River"),
        (("River", 1, -5, 0), "/generate", "less than minimum value 0"),
    ]
    for args, api_name, message in cases:
        with pytest.raises(AppError) as err:
            client.predict(*args, api_name=api_name)
        assert message in str(err.value) and "Traceback" not in str(err.value)
    gallery, _, _ = client.predict("Forest", 1, 0, 0, api_name="/generate")  # nothing is stuck
    assert len(gallery) == 1


def test_uploads_are_size_limited_before_they_are_stored(server):
    import httpx

    url, _ = server
    too_big = httpx.post(url + "/gradio_api/upload", files={"files": ("big.png", b"\0" * (MAX_FILE_SIZE + 1))})
    assert too_big.status_code == 413
    small = httpx.post(url + "/gradio_api/upload", files={"files": ("small.png", b"\0" * 100)})
    assert small.status_code == 200


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET `path` exactly as written (no client-side normalisation of ../ or %2e)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest("GET", path, skip_accept_encoding=True)
    connection.endheaders()
    response = connection.getresponse()
    return response.status, response.read()


def test_serves_no_file_outside_its_own_folders(server, client, tmp_path):
    from gradio_client import handle_file

    url, workdir = server
    upload_dir = workdir / "gradio"
    secrets = {
        "/etc/passwd": b"root:",
        str(ROOT / "app.py"): b"gr.Blocks",  # the app's own source
        str(workdir / "sat2map" / "model.safetensors"): b"__metadata__",  # a model's weights
        str(workdir / "server.log"): b"Running on",  # a file in the server's working directory
    }
    for target, marker in secrets.items():
        escape = "../" * 12 + target.lstrip("/")
        paths = [
            f"/gradio_api/file={target}",
            f"/gradio_api/file/{target.lstrip('/')}",
            f"/gradio_api/file={escape}",
            f"/gradio_api/file={upload_dir}/{escape}",
            f"/gradio_api/file={upload_dir}/" + escape.replace("../", "..%2F"),
            "/gradio_api/file=" + target.replace("/", "%2F"),
            "/gradio_api/file=" + f"{upload_dir}/{escape}".replace(".", "%2e").replace("/", "%2f"),
            f"/static/{escape}",
            f"/assets/{escape}",
            f"/{escape}",
        ]
        for path in paths:
            status, body = raw_get(url, path)
            assert marker not in body, f"{path} served {target}"
            assert status != 200 or b"<html" in body.lower(), f"{path} answered 200"
    # A file input naming a server path is refused too: only uploaded files are accepted.
    import httpx

    payload = {"data": [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, "sat2map"]}
    event = httpx.post(url + "/gradio_api/call/translate", json=payload).json()["event_id"]
    result = httpx.get(f"{url}/gradio_api/call/translate/{event}", timeout=60).text
    assert "event: error" in result and "root:" not in result
    # ...while a file the app made is served, so the refusals above are not a broken route.
    noise_png(tmp_path / "probe.png", 64, 64)
    out = client.predict(handle_file(tmp_path / "probe.png"), "sat2map", api_name="/translate")
    [served] = upload_dir.rglob("probe_map.png")
    status, body = raw_get(url, f"/gradio_api/file={served}")
    assert status == 200 and body == Path(out).read_bytes()


def test_about_tab_names_the_sources(server):
    import httpx

    config = httpx.get(server[0] + "/config").text
    assert "Hub repo [`user/rs-dcgan`]" in config and str(server[1] / "map2sat") in config
    assert "No trained weights found" not in config


def test_a_named_model_that_does_not_load_stops_the_app_with_one_line(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "app.py"), "--sat2map", str(tmp_path / "missing")],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 1 and out.stderr.strip() == f"app.py: error: {tmp_path / 'missing'}: no such folder"
