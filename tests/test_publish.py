"""`rsgan publish`: the plan (which files go to which repo, with which card, the Space's README front
matter and variables) without the network, and a Hub that is offline, unreachable, refuses the token
or fails mid-upload giving one line and leaving no staging folder behind.

The Hub cannot be reached from here: the failures use HF_HUB_OFFLINE=1, a closed local port and a
small local stand-in for the Hub's API that accepts the login, then refuses or fails what follows.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import tiny_dcgan, tiny_pix2pix
from rsgan_hub.commands.publish import RELEASES, plan

ROOT = Path(__file__).resolve().parents[1]
VARIABLES = {"RSGAN_DCGAN_MODEL": "user/rs-dcgan", "RSGAN_SAT2MAP_MODEL": "user/rs-pix2pix-sat2map",
             "RSGAN_MAP2SAT_MODEL": "user/rs-pix2pix-map2sat"}


def rsgan_publish(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`python -m rsgan_hub publish` with no saved login, temp files in tmp_path/tmp, the given env."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env = {**base, "HF_HOME": str(tmp_path / "hf_home"), "TMPDIR": str(tmp_path / "tmp"), **env}
    return subprocess.run([sys.executable, "-m", "rsgan_hub", "publish", *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)


def test_dry_run_prints_every_repo_its_files_and_card_and_contacts_nothing(tmp_path):
    # a closed port as the Hub: any network call would fail the run
    out = rsgan_publish(tmp_path, "--namespace", "user", "--dry-run", HF_ENDPOINT="http://127.0.0.1:9")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "rsgan publish --dry-run: nothing is uploaded"
    headers = [line.split(":")[0] for line in lines if not line.startswith(" ")][1:]
    assert headers == ["model user/rs-dcgan", "model user/rs-pix2pix-sat2map", "model user/rs-pix2pix-map2sat",
                       "model user/rs-scene-classifier", "space user/rsgan-hub"]
    weights = ROOT / "pretrained" / "dcgan" / "model.safetensors"
    assert f"  model.safetensors  {weights.stat().st_size / 1e6:.1f} MB  <- {weights}" in lines
    assert "  card pipeline_tag: unconditional-image-generation" in lines
    assert "  card sdk_version: 6.31.0" in lines and "  card app_file: app.py" in lines
    assert [line.strip() for line in lines if line.startswith("  variable")] == \
        [f"variable {k}={v}" for k, v in VARIABLES.items()]
    assert not list((tmp_path / "tmp").iterdir())  # nothing staged for a dry run


def test_plan_of_the_checkout():
    uploads = plan("user")
    models, space = uploads[:-1], uploads[-1]
    assert [u.repo_id for u in models] == [f"user/{name}" for name, _ in RELEASES.values()]
    for upload, folder in zip(models, RELEASES):
        assert upload.repo_type == "model" and upload.readme is None
        assert {"README.md", "config.json", "model.safetensors"} <= set(upload.files)
        assert all(p.is_relative_to(ROOT / "pretrained" / folder) for p in upload.files.values())
        assert all(p == ROOT / "pretrained" / folder / name for name, p in upload.files.items())
        assert upload.card["library_name"] == "rsgan_hub" and upload.card["license"] == "apache-2.0"
    assert space.repo_id == "user/rsgan-hub" and space.repo_type == "space" and space.variables == VARIABLES
    assert {"app.py", "requirements.txt", "rsgan_hub/__init__.py", "rsgan_hub/models/dcgan.py",
            "examples/drawn_scene.png"} <= set(space.files)
    assert not any("__pycache__" in path or path.startswith(("pretrained/", "tests/", "train/"))
                   for path in space.files)
    front = space.readme.split("---")[1]
    for line in ("sdk: gradio", "sdk_version: 6.31.0", "app_file: app.py", "- user/rs-pix2pix-map2sat"):
        assert line in front.splitlines()
    assert "https://user-rsgan-hub.hf.space/gradio_api/mcp/" in space.readme


@pytest.fixture
def checkout(tmp_path):
    """A small checkout: tiny saved releases, the real README, requirements.txt and app.py."""
    root = tmp_path / "checkout"
    tiny_dcgan(64)[0].save_pretrained(root / "pretrained" / "dcgan")
    for direction in ("sat2map", "map2sat"):
        tiny_pix2pix(direction=direction)[0].save_pretrained(root / "pretrained" / direction)
    tiny_dcgan(64)[0].save_pretrained(root / "pretrained" / "scene-classifier")  # any saved release will do
    for name in ("README.md", "requirements.txt", "app.py"):
        shutil.copy(ROOT / name, root / name)
    return root


def test_plan_refuses_a_bad_namespace_a_missing_release_and_a_stale_sdk_version(checkout):
    assert [u.repo_id for u in plan("someone", checkout)][-1] == "someone/rsgan-hub"
    with pytest.raises(ValueError, match="Repo id must"):
        plan("bad namespace", checkout)
    readme = checkout / "README.md"
    readme.write_text(readme.read_text().replace("sdk_version: 6.31.0", "sdk_version: 5.0.0", 1))
    with pytest.raises(ValueError, match="sdk_version: 6.31.0 .requirements.txt's gradio.; it says .* 5.0.0"):
        plan("user", checkout)
    shutil.rmtree(checkout / "pretrained" / "map2sat")
    with pytest.raises(ValueError, match="map2sat is not a saved release"):
        plan("user", checkout)


class StubHub(http.server.BaseHTTPRequestHandler):
    """The Hub's API as far as a login check and repo creation; `refuse` sets what fails."""

    refuse = "upload"  # "login": whoami answers 401; "upload": everything after create_repo answers 500
    calls: list[str] = []

    def answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.calls.append(f"{self.command} {self.path}")
        if self.path.startswith("/api/whoami"):
            if self.refuse == "login":
                return self.answer(401, {"error": "Invalid credentials in Authorization header"})
            return self.answer(200, {"name": "user", "type": "user", "auth": {"type": "access_token"}})
        if self.path == "/api/repos/create":
            return self.answer(200, {"url": f"http://{self.headers['Host']}/user/rs-dcgan", "name": "user/rs-dcgan"})
        self.answer(500, {"error": "stub Hub: no uploads here"})

    do_GET = do_POST = do_PUT = do_HEAD = handle_any

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def stub_hub(refuse: str):
    StubHub.refuse, StubHub.calls = refuse, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StubHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def one_line_error(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 1 and out.stdout.count("published https") == 0, out.stdout + out.stderr
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("rsgan: error: ") and "Traceback" not in out.stderr
    return line


@pytest.mark.parametrize("env, message", [
    ({"HF_HUB_OFFLINE": "1", "HF_TOKEN": "hf_bogus"}, "offline mode is enabled"),
    ({"HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_bogus"}, "could not be reached (" ),
    ({"HF_ENDPOINT": "http://127.0.0.1:9"}, "not logged in to the Hub: run `hf auth login`, set HF_TOKEN"),
])
def test_an_unreachable_hub_or_no_login_is_one_line_and_nothing_is_published(tmp_path, env, message):
    line = one_line_error(rsgan_publish(tmp_path, "--namespace", "user", **env))
    assert message in line and line.endswith("nothing was published")
    assert not list((tmp_path / "tmp").iterdir())


def test_a_refused_token_stops_before_any_repo_is_created(tmp_path):
    with stub_hub("login") as endpoint:
        line = one_line_error(rsgan_publish(tmp_path, "--namespace", "user", HF_ENDPOINT=endpoint, HF_TOKEN="hf_bad"))
    assert "Invalid user token" in line and line.endswith("nothing was published")
    assert not [call for call in StubHub.calls if not call.startswith("GET ")]  # no repo created, nothing sent


def test_a_failed_upload_leaves_no_staging_folder(tmp_path):
    with stub_hub("upload") as endpoint:
        line = one_line_error(rsgan_publish(tmp_path, "--namespace", "user", HF_ENDPOINT=endpoint, HF_TOKEN="hf_ok"))
    assert "POST /api/repos/create" in StubHub.calls and "500 Internal Server Error" in line
    assert line.endswith("stopped at user/rs-dcgan; published so far: none (run again to finish)")
    assert not list((tmp_path / "tmp").iterdir())  # the staged copy of pretrained/dcgan is gone


def test_plan_uploads_a_releases_discriminator_folder(tmp_path):
    """A release written by the training scripts has discriminator/; the model repo must get it, so that
    `--init_from user/rs-dcgan` works from the Hub. Hidden files (the output marker) stay behind."""
    for name in ("README.md", "requirements.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    for folder in RELEASES:
        (tmp_path / "pretrained" / folder).mkdir(parents=True)
        for name in ("README.md", "config.json"):
            shutil.copy(ROOT / "pretrained" / folder / name, tmp_path / "pretrained" / folder / name)
    release = tmp_path / "pretrained" / "dcgan"
    (release / "discriminator").mkdir()
    (release / "discriminator" / "config.json").write_text("{}")
    (release / "discriminator" / "model.safetensors").write_bytes(b"weights")
    (release / ".rsgan-output").write_text("{}")
    dcgan = plan("user", root=tmp_path)[0]
    assert dcgan.repo_id == "user/rs-dcgan"
    assert set(dcgan.files) == {"README.md", "config.json", "discriminator/config.json",
                                "discriminator/model.safetensors"}
