"""rsgan_hub's Gradio Space: satellite-scene generation with a DCGAN (Radford et al. 2016) and
satellite <-> map translation of whole scenes with pix2pix (Isola et al. 2017), in the browser.

`python app.py` loads three models once at start - the DCGAN generator and the two pix2pix
generators - from `pretrained/` (or from the folders / Hub repo ids in RSGAN_DCGAN_MODEL,
RSGAN_SAT2MAP_MODEL, RSGAN_MAP2SAT_MODEL, or the matching flags). A slot with nothing configured
gets a small freshly initialised network and the page says so; a named model that fails to load
stops the app. This file is UI only: the predict functions below take their seeds as arguments,
run under `torch.inference_mode()` and call `rsgan_hub.pipelines`; every one has an `api_name`, so
`gradio_client` can drive the Space, and the model calls (generate, class_overview, explore, translate,
scene_to_map) are also MCP tools (`launch(mcp_server=True)`): their docstrings, with the model's class
names and the limits filled in by `bind`, are the tools' descriptions. Bad input raises `gr.Error` with
one line; uploads are limited in bytes (by Gradio, before they are stored) and in pixels (from the file
header, before decoding).
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import inspect
import math
import os
import re
import secrets
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from gradio.utils import get_upload_folder
from huggingface_hub import ModelCard
from PIL import Image

from rsgan_hub import DCGANGenerator, ModelLoadError, Pix2PixGenerator, class_grid, generate_images, make_grid
from rsgan_hub.geo import is_tiff, open_scene
from rsgan_hub.io import first_line
from rsgan_hub.pipelines import (MIN_TRUNCATION, check_translator, latent_walk, prepare, translate_file,
                                 translate_image)

HERE = Path(__file__).resolve().parent
MAX_IMAGES = 64  # per /generate call
MAX_FRAMES = 48  # per latent walk
MAX_SEED = 2**31 - 1
MAX_TRUNCATION = 3.0  # the sliders' range; more is the same as off in practice
MAX_PIXELS = 4096 * 4096  # per upload; the full pix2pix took 13 s/megapixel on a busy 2-core CPU (bf16)
MAX_FILE_SIZE = "100mb"
PREVIEW_SIDE = 1024  # side of the on-page comparison; downloads keep full resolution
UPLOAD_PREVIEW_SIDE = 512  # side of the preview of an upload, before it is translated
DISPLAY_SIDE = 512  # a generated scene and its map are enlarged (nearest neighbour) to about this side
OVERVIEW_CLASSES = 8  # classes the class overview offers first, spread over the model's list
MAX_OVERVIEW_IMAGES = 4 * MAX_IMAGES  # per /class_overview call: classes x images per class
CACHE_AGE = 3600  # seconds the app's output files are kept (Gradio's delete_cache)
DIRECTIONS = {"sat2map": "Satellite → Map", "map2sat": "Map → Satellite"}
MODEL_SLOTS = {  # slot -> (environment variable, folder in pretrained/, what the page calls it)
    "dcgan": ("RSGAN_DCGAN_MODEL", "dcgan", "Scene generator (DCGAN)"),
    "sat2map": ("RSGAN_SAT2MAP_MODEL", "sat2map", "Satellite → Map (pix2pix)"),
    "map2sat": ("RSGAN_MAP2SAT_MODEL", "map2sat", "Map → Satellite (pix2pix)"),
}


# ---- models: loaded once, at start --------------------------------------------------------------
@dataclass
class Models:
    dcgan: DCGANGenerator
    sat2map: Pix2PixGenerator
    map2sat: Pix2PixGenerator
    sources: dict[str, str | None] = field(default_factory=dict)  # slot -> folder or repo id; None: untrained
    # the translators' inference copies (bf16 where this CPU has it natively), prepared once at start
    fast: dict[str, torch.nn.Module] = field(default_factory=dict)

    def translator(self, direction: str) -> torch.nn.Module:
        if direction not in self.fast:
            self.fast[direction] = prepare(getattr(self, direction))
        return self.fast[direction]

    @property
    def untrained(self) -> list[str]:
        return [slot for slot in MODEL_SLOTS if self.sources.get(slot) is None]

    @property
    def notice(self) -> str:
        if not self.untrained:
            return ""
        names = ", ".join(MODEL_SLOTS[s][2] for s in self.untrained)
        return (f"⚠️ **No trained weights found for: {names}.** These run on freshly initialised networks, "
                "so their output is meaningless (flat grey or noise). Point `RSGAN_DCGAN_MODEL`, "
                "`RSGAN_SAT2MAP_MODEL` or `RSGAN_MAP2SAT_MODEL` at a saved model folder or Hub repo id, "
                "or add `pretrained/`.")


def fresh_model(slot: str) -> torch.nn.Module:
    """A small untrained network, so the app starts (fast) before any weights exist."""
    if slot == "dcgan":
        return DCGANGenerator(image_size=128, channels=[256, 128, 64, 32, 16]).eval()
    return Pix2PixGenerator(base_channels=16, direction=slot).eval()


def load_models(dcgan: str | None = None, sat2map: str | None = None, map2sat: str | None = None) -> Models:
    """Load each model from its argument, else its environment variable, else `pretrained/<slot>`;
    fall back to a fresh network only when none of these is given or exists. A model that is named
    but fails to load raises `ModelLoadError`: a typo must not start a demo that shows noise."""
    given = {"dcgan": dcgan, "sat2map": sat2map, "map2sat": map2sat}
    loaded, sources = {}, {}
    for slot, (env, folder, _) in MODEL_SLOTS.items():
        source = given[slot] or os.environ.get(env)
        if not source and (HERE / "pretrained" / folder / "config.json").is_file():
            source = str(HERE / "pretrained" / folder)
        sources[slot] = source or None
        if not source:
            loaded[slot] = fresh_model(slot)
            continue
        loaded[slot] = (DCGANGenerator if slot == "dcgan" else Pix2PixGenerator).from_pretrained(source)
        if slot != "dcgan":
            check_translator(loaded[slot], slot)  # a sat2map model in the map2sat slot fails here
    models = Models(**loaded, sources=sources)
    for direction in DIRECTIONS:
        models.translator(direction)
    return models


def model_card(models: Models, slot: str) -> str:
    """Markdown for the About tab: where the model came from, then its card without the YAML header."""
    model, source = getattr(models, slot), models.sources[slot]
    card = None
    if source is None:
        where = "nowhere - a freshly initialised, untrained network"
    elif os.path.isdir(source):
        where = f"the folder `{source}`"
        card_file = Path(source) / "README.md"
        card = ModelCard.load(card_file).text if card_file.is_file() else None
    else:
        where = f"the Hub repo [`{source}`](https://huggingface.co/{source})"
        try:
            card = ModelCard.load(source).text
        except OSError:  # offline, or a repo without a card: fall back to the generated card
            card = None
    card = card or model.generate_model_card().text
    return f"**Loaded from {where}.**\n\n{card}"


# ---- helpers ------------------------------------------------------------------------------------
def user_errors(fn):
    """Turn expected failures into a one-line `gr.Error` (never a stack trace for the user)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, OSError, ModelLoadError, Image.DecompressionBombError) as err:
            message = first_line(err)
            raise gr.Error(message, print_exception=False) from err

    return wrapper


def output_dir() -> Path:
    """A new folder in Gradio's upload cache for one request's files: Gradio serves them from
    there without copying, and `delete_cache` removes them after CACHE_AGE seconds."""
    root = Path(get_upload_folder()) / "rsgan"
    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():  # folders emptied by delete_cache; never a young one a request is filling
        try:
            if old.is_dir() and time.time() - old.stat().st_mtime > CACHE_AGE:
                old.rmdir()  # fails, harmlessly, if files are left
        except OSError:
            pass
    return Path(tempfile.mkdtemp(dir=root))


def check_int(value, name: str, low: int, high: int) -> int:
    if value is None or float(value) != int(value) or not low <= int(value) <= high:
        raise gr.Error(f"{name} must be a whole number from {low} to {high}, got {value}")
    return int(value)


def check_truncation(value) -> float | None:
    """0 or empty means no truncation."""
    if value in (None, "", 0):
        return None
    if not MIN_TRUNCATION <= float(value) <= MAX_TRUNCATION:  # below the floor the redraw finds almost nothing
        raise gr.Error(f"truncation must be 0 (off) or from {MIN_TRUNCATION} to {MAX_TRUNCATION}, got {value}")
    return float(value)


def read_preview(path: str, side: int = PREVIEW_SIDE) -> Image.Image:
    """An image file as RGB, shrunk by a whole factor (box filter) to at most `side` on its long side. It is
    read in strips, as the translation reads it, so a large GeoTIFF is never held whole for the page."""
    with open_scene(path, max_pixels=MAX_PIXELS) as scene:
        factor = max(1, math.ceil(max(scene.height, scene.width) / side))
        rows = factor * max(1, 512 // factor)  # per read: a multiple of the factor, so the boxes line up
        strips = [np.asarray(Image.fromarray(scene.read_rows(y, min(y + rows, scene.height))).reduce(factor))
                  for y in range(0, scene.height, rows)]
    return Image.fromarray(np.concatenate(strips))


def enlarge(image: Image.Image) -> Image.Image:
    """Nearest-neighbour enlargement by a whole factor to about DISPLAY_SIDE: a 128² scene seen pixel by pixel."""
    factor = max(1, DISPLAY_SIDE // max(image.size))
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def bind(fn, models: Models, facts: dict[str, str]):
    """`fn(models, ...)` as an event's function `fn(...)`: Gradio reads its name, signature and docstring
    (with the {placeholders} filled from `facts`) for the API page and the MCP tool it becomes."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        return fn(models, *args, **kwargs)

    signature = inspect.signature(fn)
    call.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
    call.__doc__ = inspect.getdoc(fn).format_map(facts)
    return call


# ---- predict functions --------------------------------------------------------------------------
# Their docstrings are what MCP clients read: one line per argument under Args:, limits stated.
@user_errors
@torch.inference_mode()
def generate(models: Models, class_name: str, num_images: int = 16, seed: int = 0, truncation: float = 0):
    """Generate synthetic satellite scenes with the DCGAN. Scene i uses seed + i, so a seed always gives the same scenes.

    Args:
        class_name: the scene class: {classes}.
        num_images: how many scenes, a whole number from 1 to {max_images}.
        seed: the first scene's seed, a whole number from 0 to {max_seed}.
        truncation: 0 (off), or from 0.05 to 3; lower values give more typical scenes, less varied (1 to 2 is usual).

    Returns:
        a gallery of the scenes, one grid image of them all, and a zip of their PNGs
    """
    num_images = check_int(num_images, "number of images", 1, MAX_IMAGES)
    seed = check_int(seed, "seed", 0, MAX_SEED)
    images = generate_images(models.dcgan, num_images, seed, class_name or None, check_truncation(truncation))
    grid = make_grid(images, columns=min(8, len(images)))
    name = re.sub(r"[^\w-]+", "_", f"scenes_{class_name}_seed{seed}" if class_name else f"scenes_seed{seed}")
    out = output_dir() / f"{name}.zip"
    with zipfile.ZipFile(out, "w") as archive:
        for i, image in enumerate(images):
            with archive.open(f"{name}/seed{seed + i}.png", "w") as f:
                image.save(f, format="PNG")
    gallery = [(image, f"seed {seed + i}") for i, image in enumerate(images)]
    return gallery, grid, str(out)


@user_errors
@torch.inference_mode()
def class_overview(models: Models, classes: list[str], per_class: int = 8, seed: int = 0, truncation: float = 0):
    """An overview of what the class-conditional DCGAN knows: one row of scenes per class, column j using seed + j in every row.

    Args:
        classes: the classes to show, one row each, each {classes}.
        per_class: scenes per class, a whole number from 1 to 16; classes x per_class is at most {max_overview}.
        seed: the first column's seed, a whole number from 0 to {max_seed}.
        truncation: 0 (off), or from 0.05 to 3; lower values give more typical scenes, less varied.

    Returns:
        one image: a labelled row of scenes per class
    """
    if not models.dcgan.num_classes:
        raise gr.Error("the model is unconditional: it has no classes to show")
    classes = [classes] if isinstance(classes, str) else list(classes or [])
    if not classes:
        raise gr.Error("choose at least one class")
    per_class = check_int(per_class, "scenes per class", 1, 16)
    if len(classes) * per_class > MAX_OVERVIEW_IMAGES:
        raise gr.Error(f"{len(classes)} classes x {per_class} scenes is over the limit of {MAX_OVERVIEW_IMAGES}")
    seed, truncation = check_int(seed, "seed", 0, MAX_SEED), check_truncation(truncation)
    return class_grid(models.dcgan, classes, per_class, seed, truncation=truncation)


@user_errors
@torch.inference_mode()
def explore(models: Models, class_name: str, seed_a: int = 0, seed_b: int = 1, num_frames: int = 16,
            truncation: float = 0):
    """A latent walk with the DCGAN: the scenes on the way from seed_a's latent vector to seed_b's.

    Args:
        class_name: the scene class: {classes}.
        seed_a: the seed the walk starts from, a whole number from 0 to {max_seed}.
        seed_b: the seed the walk ends at, a whole number from 0 to {max_seed}.
        num_frames: frames on the way, a whole number from 2 to {max_frames}.
        truncation: 0 (off), or from 0.05 to 3; lower values give more typical scenes, less varied.

    Returns:
        an animated GIF of the walk (there and back) and one strip image of its frames
    """
    seed_a, seed_b = check_int(seed_a, "seed A", 0, MAX_SEED), check_int(seed_b, "seed B", 0, MAX_SEED)
    num_frames = check_int(num_frames, "number of frames", 2, MAX_FRAMES)
    frames = latent_walk(models.dcgan, seed_a, seed_b, num_frames, class_name or None, check_truncation(truncation))
    gif = output_dir() / f"walk_seed{seed_a}_to_{seed_b}.gif"
    loop = frames + frames[-2:0:-1]  # there and back, so the animation loops without a jump
    loop[0].save(gif, save_all=True, append_images=loop[1:], duration=120, loop=0)
    return str(gif), make_grid(frames, columns=len(frames))


@user_errors
@torch.inference_mode()
def translate(models: Models, image: str, direction: str = "sat2map", progress=gr.Progress()):
    """Translate a whole satellite image into a map, or a map into a satellite image, with pix2pix (overlapping 256 px tiles).

    Args:
        image: the scene, a PNG, JPEG or (Geo)TIFF file of at most {max_megapixels} megapixels and at least 8 px a side.
        direction: "sat2map" (a satellite image in, its map out) or "map2sat" (a map in, a satellite image out).

    Returns:
        the translated file at full resolution: a GeoTIFF with the upload's georeferencing for a (Geo)TIFF, else a PNG
    """
    if not image:
        raise gr.Error("upload an image first")
    if direction not in DIRECTIONS:
        raise gr.Error(f"direction must be 'sat2map' or 'map2sat', got {direction!r}")
    path = Path(image)
    suffix = ".tif" if is_tiff(path) else ".png"
    out = output_dir() / f"{path.stem}_{'map' if direction == 'sat2map' else 'satellite'}{suffix}"
    # translate_file checks the pixel count from the header before decoding anything.
    translate_file(models.translator(direction), path, out, direction, max_pixels=MAX_PIXELS,
                   progress=lambda done, total: progress((done, total), desc="translating", unit="tiles"))
    return str(out)


@user_errors
def upload_preview(image: str | None):
    """The upload, shrunk for the page (the file itself is what /translate reads)."""
    return read_preview(image, UPLOAD_PREVIEW_SIDE) if image else None


@user_errors
def compare(image: str | None, translated: str | None):
    """(upload, translated file) -> (slider pair, upload preview, result preview, downloads): the
    downloads are the translated file and, for a GeoTIFF, a PNG of the same pixels."""
    if not image or not translated:
        raise gr.Error("nothing to compare yet: translate an image first")
    downloads = [translated]
    if is_tiff(Path(translated)):
        downloads.append(str(output_dir() / f"{Path(translated).stem}.png"))
        with open_scene(translated, max_pixels=MAX_PIXELS) as scene:
            Image.fromarray(scene.read_rows(0, scene.height)).save(downloads[-1])
    before, after = read_preview(image), read_preview(translated)
    return (before, after), before, after, downloads


@user_errors
@torch.inference_mode()
def scene_to_map(models: Models, class_name: str, seed: int = 0, truncation: float = 0):
    """Generate one synthetic satellite scene with the DCGAN and translate it into its map with pix2pix (sat2map).

    Args:
        class_name: the scene class: {classes}.
        seed: the scene's seed, a whole number from 0 to {max_seed}.
        truncation: 0 (off), or from 0.05 to 3; lower values give more typical scenes, less varied.

    Returns:
        the scene and its map, both at the generator's native size ({image_size} px)
    """
    seed = check_int(seed, "seed", 0, MAX_SEED)
    scene = generate_images(models.dcgan, 1, seed, class_name or None, check_truncation(truncation))[0]
    return scene, translate_image(models.translator("sat2map"), scene)


@user_errors
def show_large(scene: Image.Image | None, drawn_map: Image.Image | None):
    """(scene, map) -> both enlarged for the page, and their native-size PNGs for download."""
    if scene is None or drawn_map is None:
        raise gr.Error("nothing to show yet: generate a scene first")
    folder = output_dir()
    downloads = [str(folder / "scene.png"), str(folder / "map.png")]
    scene.save(downloads[0])
    drawn_map.save(downloads[1])
    return enlarge(scene), enlarge(drawn_map), downloads


def pick_seed(seed: int, randomize: bool) -> int:
    """A fresh random seed when the box is ticked, else the seed as it is."""
    return secrets.randbelow(MAX_SEED + 1) if randomize else seed  # not torch's RNG: same after each restart


# ---- the page -----------------------------------------------------------------------------------
def build_demo(models: Models) -> gr.Blocks:
    classes = models.dcgan.class_names
    conditional = bool(models.dcgan.num_classes)
    examples = [(str(p), "sat2map" if "scene" in p.name else "map2sat") for p in sorted((HERE / "examples").glob("*.png"))]
    facts = {"classes": f"one of {', '.join(classes)}" if conditional
             else "an empty string: this model is unconditional",
             "max_images": MAX_IMAGES, "max_seed": MAX_SEED, "max_frames": MAX_FRAMES,
             "max_overview": MAX_OVERVIEW_IMAGES, "max_megapixels": f"{MAX_PIXELS / 1e6:.1f}",
             "image_size": models.dcgan.image_size}
    run = dict(concurrency_id="models")  # every model call shares one concurrency limit (CPU-bound)
    page_only = dict(api_visibility="undocumented")  # page plumbing: callable, but neither documented nor an MCP tool

    def tool(fn):
        return bind(fn, models, facts)

    def class_picker():
        return gr.Dropdown(choices=classes, value=classes[0] if conditional else None, label="Scene class",
                           visible=conditional, allow_custom_value=True)  # checked by resolve_label, by name

    def pick_example(evt: gr.SelectData):
        """A click on an example thumbnail -> (its file, from Gradio's cache; its direction)."""
        return evt.value["image"]["path"], examples[evt.index][1]

    with gr.Blocks(title="rsgan_hub", delete_cache=(600, CACHE_AGE)) as demo:
        gr.Markdown("# rsgan_hub\nSynthetic satellite scenes (DCGAN) and satellite ⇄ map translation of "
                    "whole scenes (pix2pix). Generated or translated imagery is **not ground truth**.")
        if models.notice:
            gr.Markdown(models.notice, elem_id="untrained-notice")
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=1):
                    if conditional:  # the overview first: it shows what the model knows
                        spread = classes[::max(1, len(classes) // OVERVIEW_CLASSES)][:OVERVIEW_CLASSES]
                        ov_classes = gr.Dropdown(classes, value=spread, multiselect=True, label="Classes to compare")
                        ov_per_class = gr.Slider(1, 16, value=8, step=1, label="Scenes per class")
                        ov_button = gr.Button("Show one row per class", variant="primary", elem_id="overview-button")
                    gen_class = class_picker()
                    gen_n = gr.Slider(1, MAX_IMAGES, value=16, step=1, label="Number of images")
                    with gr.Row():
                        gen_seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
                        gen_random = gr.Checkbox(False, label="Randomise seed")
                    gen_trunc = gr.Slider(0, MAX_TRUNCATION, value=0, step=0.1, label="Truncation (0 = off; lower = more typical)")
                    gen_button = gr.Button("Generate", variant="primary", elem_id="generate-button")
                with gr.Column(scale=2):
                    if conditional:
                        ov_image = gr.Image(label="One row per class; column j uses seed + j in every row", type="pil",
                                            format="png", elem_id="overview-image")
                    gen_gallery = gr.Gallery(label="Scenes (image i uses seed + i)", columns=6, format="png",
                                             elem_id="generate-gallery")
                    gen_grid = gr.Image(label="Grid", type="pil", format="png")
                    gen_zip = gr.File(label="All PNGs (zip)", elem_id="generate-zip")
            if conditional:
                ov_button.click(tool(class_overview), [ov_classes, ov_per_class, gen_seed, gen_trunc], ov_image,
                                api_name="class_overview", **run)
            gen_button.click(pick_seed, [gen_seed, gen_random], gen_seed, api_name="pick_seed", queue=False,
                             **page_only).then(
                tool(generate), [gen_class, gen_n, gen_seed, gen_trunc], [gen_gallery, gen_grid, gen_zip],
                api_name="generate", **run)
        with gr.Tab("Explore"):
            with gr.Row():
                with gr.Column(scale=1):
                    walk_class = class_picker()
                    walk_a = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="From seed")
                    walk_b = gr.Number(1, precision=0, minimum=0, maximum=MAX_SEED, label="To seed")
                    walk_n = gr.Slider(2, MAX_FRAMES, value=16, step=1, label="Frames")
                    walk_trunc = gr.Slider(0, MAX_TRUNCATION, value=0, step=0.1, label="Truncation (0 = off)")
                    walk_button = gr.Button("Walk", variant="primary", elem_id="walk-button")
                with gr.Column(scale=2):
                    walk_gif = gr.Image(label="Latent walk", type="filepath", format="gif", elem_id="walk-gif")
                    walk_strip = gr.Image(label="Frames", type="pil", format="png")
            walk_button.click(tool(explore), [walk_class, walk_a, walk_b, walk_n, walk_trunc], [walk_gif, walk_strip],
                              api_name="explore", **run)
        with gr.Tab("Satellite ⇄ Map"):
            with gr.Row():
                with gr.Column(scale=1):
                    tr_direction = gr.Radio([(label, key) for key, label in DIRECTIONS.items()], value="sat2map",
                                            label="Direction")
                    tr_upload = gr.File(label=f"Scene: PNG, JPEG or GeoTIFF, up to {MAX_PIXELS / 1e6:.1f} megapixels",
                                        file_types=["image", ".tif", ".tiff"], type="filepath",
                                        elem_id="translate-upload")
                    if examples:
                        tr_examples = gr.Gallery([(path, DIRECTIONS[direction]) for path, direction in examples],
                                                 label="…or click an example (drawn by code, not a real place)",
                                                 columns=len(examples), height=200, object_fit="contain",
                                                 allow_preview=False, interactive=False, elem_id="translate-examples")
                    tr_preview = gr.Image(label="To translate (a preview; the full file is translated)", type="pil",
                                          format="png", interactive=False, height=300, elem_id="translate-preview")
                    tr_button = gr.Button("Translate", variant="primary", elem_id="translate-button")
                with gr.Column(scale=2):
                    with gr.Tab("Slider"):
                        tr_slider = gr.ImageSlider(label="Input | translation", type="pil", format="png",
                                                   elem_id="translate-slider")
                    with gr.Tab("Side by side"):
                        with gr.Row():
                            tr_before = gr.Image(label="Input", type="pil", format="png")
                            tr_after = gr.Image(label="Translation", type="pil", format="png")
                    tr_file = gr.File(visible=False)  # /translate's result; the page shows tr_downloads
                    tr_downloads = gr.File(label="Download, full resolution (PNG; GeoTIFF + PNG for a GeoTIFF)",
                                           file_count="multiple", elem_id="translate-downloads")
            tr_upload.change(upload_preview, tr_upload, tr_preview, api_name="upload_preview", **page_only)
            if examples:
                tr_examples.select(pick_example, None, [tr_upload, tr_direction], api_name="pick_example",
                                   queue=False, **page_only)
            tr_button.click(tool(translate), [tr_upload, tr_direction], tr_file, api_name="translate", **run).success(
                compare, [tr_upload, tr_file], [tr_slider, tr_before, tr_after, tr_downloads],
                api_name="compare", **page_only, **run)
        with gr.Tab("Scene + map"):
            with gr.Row():
                with gr.Column(scale=1):
                    sm_class = class_picker()
                    with gr.Row():
                        sm_seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
                        sm_random = gr.Checkbox(True, label="Randomise seed")
                    sm_trunc = gr.Slider(0, MAX_TRUNCATION, value=0, step=0.1, label="Truncation (0 = off)")
                    sm_button = gr.Button("Generate scene and map", variant="primary", elem_id="scene-map-button")
                    sm_downloads = gr.File(label=f"Download at native size ({models.dcgan.image_size} px)",
                                           file_count="multiple", elem_id="scene-map-downloads")
                with gr.Column(scale=3), gr.Row():
                    # shown enlarged, pixel by pixel; the downloads on the left keep the native size
                    sm_scene = gr.Image(label="Generated scene", type="pil", format="png", buttons=["fullscreen"],
                                        elem_id="scene-map-scene")
                    sm_map = gr.Image(label="Its map", type="pil", format="png", buttons=["fullscreen"],
                                      elem_id="scene-map-map")
            sm_native = [gr.Image(type="pil", format="png", visible=False) for _ in range(2)]  # /scene_to_map's result
            sm_button.click(pick_seed, [sm_seed, sm_random], sm_seed, api_name="pick_seed_1", queue=False,
                            **page_only).then(
                tool(scene_to_map), [sm_class, sm_seed, sm_trunc], sm_native, api_name="scene_to_map", **run).success(
                show_large, sm_native, [sm_scene, sm_map, sm_downloads], api_name="show_large", **page_only)
        with gr.Tab("About"):
            for slot in MODEL_SLOTS:
                with gr.Accordion(MODEL_SLOTS[slot][2], open=False):
                    gr.Markdown(model_card(models, slot))
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="rsgan_hub's Gradio app.")
    for slot, (env, folder, _) in MODEL_SLOTS.items():
        p.add_argument(f"--{slot}", default=None, help=f"model folder or Hub repo id (default: ${env}, "
                                                       f"else pretrained/{folder}, else an untrained network)")
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1; $GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, default=None, help="port (default 7860 or the next free one)")
    p.add_argument("--concurrency", type=int, default=2, help="model calls running at once (default 2)")
    p.add_argument("--queue-size", type=int, default=64, help="requests waiting at most (default 64)")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                   help=f"largest upload in pixels (default {MAX_PIXELS})")
    p.add_argument("--max-file-size", default=MAX_FILE_SIZE, type=lambda v: int(v) if v.isdigit() else v,
                   help=f"largest upload: bytes, or with a unit like 20mb (default {MAX_FILE_SIZE})")
    return p.parse_args(argv)


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives busy threads malloc arenas of their own (up to 8 per core); Gradio's worker threads then
    keep freed tile and image buffers in several arenas and the server's RSS creeps up under load."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # -8: M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        pass


if __name__ == "__main__":
    limit_malloc_arenas()
    args = parse_args()
    MAX_PIXELS = args.max_pixels  # read by the predict functions at call time
    try:
        models = load_models(args.dcgan, args.sat2map, args.map2sat)
    except (ModelLoadError, ValueError, OSError) as err:  # one line, as the rsgan CLI does
        raise SystemExit(f"app.py: error: {first_line(err)}") from None
    demo = build_demo(models)
    demo.queue(default_concurrency_limit=args.concurrency, max_size=args.queue_size)
    # No allowed_paths: Gradio serves only its own upload / cache folders and the page's assets.
    # mcp_server: the tools at /gradio_api/mcp/ (streamable HTTP) for MCP clients, beside the page and the API.
    demo.launch(server_name=args.host, server_port=args.port, max_file_size=args.max_file_size,
                footer_links=["api", "gradio"], mcp_server=True)
