"""app.py's model loading and predict functions on their own (no server): tiny saved models."""

from __future__ import annotations

import inspect
import io
import sys
import time
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from conftest import tiny_dcgan, tiny_pix2pix
from rsgan_hub import ModelLoadError, generate_images
from rsgan_hub.pipelines import latent_walk, translate_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import app  # noqa: E402  (app.py sits at the repository root, beside tests/)

CLASSES = ["Forest", "River"]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """Tiny saved models: a conditional 64 px DCGAN and both pix2pix directions."""
    root = tmp_path_factory.mktemp("models")
    tiny_dcgan(64, num_classes=2, class_names=CLASSES)[0].save_pretrained(root / "dcgan")
    for direction in ("sat2map", "map2sat"):
        tiny_pix2pix(direction=direction)[0].save_pretrained(root / direction)
    return root


@pytest.fixture(scope="module")
def models(model_dirs):
    return app.load_models(*(str(model_dirs / s) for s in ("dcgan", "sat2map", "map2sat")))


@pytest.fixture(autouse=True)
def upload_folder(tmp_path, monkeypatch):
    """Gradio's upload folder, where the predict functions write their files."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    return tmp_path / "gradio"


def noise_png(path, width=300, height=200, seed=0):
    array = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    return array


def test_untrained_fallback_has_a_notice(tmp_path, monkeypatch):
    monkeypatch.setattr(app, "HERE", tmp_path)  # no pretrained/ folder here
    for env, _, _ in app.MODEL_SLOTS.values():
        monkeypatch.delenv(env, raising=False)
    models = app.load_models()
    assert models.untrained == ["dcgan", "sat2map", "map2sat"]
    assert "No trained weights found for: Scene generator (DCGAN), Satellite → Map (pix2pix)" in models.notice
    assert models.dcgan.image_size == 128 and models.sat2map.direction == "sat2map"
    assert "freshly initialised" in app.model_card(models, "dcgan")
    notices = [b for b in app.build_demo(models).blocks.values() if getattr(b, "elem_id", None) == "untrained-notice"]
    assert len(notices) == 1 and "RSGAN_DCGAN_MODEL" in notices[0].value


def test_load_from_env_flags_and_pretrained(model_dirs, tmp_path, monkeypatch):
    monkeypatch.setattr(app, "HERE", tmp_path)
    monkeypatch.setenv("RSGAN_DCGAN_MODEL", str(model_dirs / "dcgan"))
    monkeypatch.delenv("RSGAN_MAP2SAT_MODEL", raising=False)
    monkeypatch.delenv("RSGAN_SAT2MAP_MODEL", raising=False)
    (tmp_path / "pretrained").mkdir()
    (tmp_path / "pretrained" / "map2sat").symlink_to(model_dirs / "map2sat")
    models = app.load_models(sat2map=str(model_dirs / "sat2map"))
    assert models.untrained == [] and models.notice == ""
    assert models.dcgan.class_names == CLASSES
    assert models.sources["map2sat"] == str(tmp_path / "pretrained" / "map2sat")
    about = app.model_card(models, "sat2map")
    assert f"Loaded from the folder `{model_dirs / 'sat2map'}`" in about and "not ground truth" in about
    assert "---" not in about.split("\n")[2]  # the card's YAML header is not shown


def test_named_model_that_fails_to_load_is_an_error(model_dirs):
    with pytest.raises(ModelLoadError, match="no such folder"):
        app.load_models(dcgan="./no/such/model")
    with pytest.raises(ValueError, match="the model translates sat2map, not map2sat"):
        app.load_models(str(model_dirs / "dcgan"), str(model_dirs / "sat2map"), str(model_dirs / "sat2map"))


def test_generate(models):
    gallery, grid, zip_path = app.generate(models, "River", 5, 7, 1.5)
    expected = generate_images(models.dcgan, 5, seed=7, label="River", truncation=1.5)
    assert [caption for _, caption in gallery] == [f"seed {s}" for s in range(7, 12)]
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for (a, _), b in zip(gallery, expected))
    assert grid.size == (5 * 66 + 2, 68)  # 5 columns of 64 px, 2 px padding around each
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        assert names == [f"scenes_River_seed7/seed{s}.png" for s in range(7, 12)]
        first = Image.open(io.BytesIO(archive.read(names[0])))
        assert np.array_equal(np.asarray(first), np.asarray(expected[0]))
    # the same seed gives the same scenes; truncation 0 means off
    again, _, _ = app.generate(models, "River", 1, 7, 0)
    assert np.array_equal(np.asarray(again[0][0]), np.asarray(generate_images(models.dcgan, 1, 7, "River")[0]))


@pytest.mark.parametrize("args, message", [
    (("River", 0, 0, 0), "number of images must be a whole number from 1 to 64, got 0"),
    (("River", 65, 0, 0), "from 1 to 64, got 65"),
    (("River", 2.5, 0, 0), "got 2.5"),
    (("River", 1, -1, 0), "seed must be a whole number"),
    (("Desert", 1, 0, 0), "unknown class 'Desert'; known classes: Forest, River"),
    (("", 1, 0, 0), "the model is class-conditional: choose one of Forest, River"),
    (("River", 1, 0, -1), "truncation must be 0 (off) or from 0.05 to 3.0"),
    (("River", 1, 0, 4), "truncation must be 0 (off) or from 0.05 to 3.0"),
])
def test_generate_bad_input_is_a_one_line_gr_error(models, args, message):
    with pytest.raises(gr.Error) as err:
        app.generate(models, *args)
    assert message in err.value.message and "\n" not in err.value.message


def test_explore(models):
    gif, strip = app.explore(models, "Forest", 3, 9, 5, 0)
    frames = latent_walk(models.dcgan, 3, 9, 5, "Forest")
    with Image.open(gif) as animation:
        assert animation.n_frames == 8  # 5 frames there, 3 back
        assert animation.size == (64, 64)
        first = np.asarray(animation.convert("RGB"), dtype=np.float32)
    assert np.abs(first - np.asarray(frames[0], dtype=np.float32)).mean() < 8  # GIF palette: close, not equal
    assert strip.size == (5 * 66 + 2, 68)
    with pytest.raises(gr.Error, match="number of frames must be a whole number from 2 to 48"):
        app.explore(models, "Forest", 3, 9, 1, 0)


def test_translate_png(models, tmp_path):
    source = noise_png(tmp_path / "scene.png", 300, 200)
    calls = []
    out = app.translate(models, str(tmp_path / "scene.png"), "sat2map", progress=lambda *a, **k: calls.append(a))
    assert Path(out).name == "scene_map.png"
    expected = translate_image(models.sat2map, source)
    assert np.array_equal(np.asarray(Image.open(out)), expected)
    assert calls[-1] == ((2, 2),)  # one row (200 < 256 px) of two 256 px tiles (300 px wide)
    # compare: previews, and the PNG download is the translated file itself
    pair, before, after, downloads = app.compare(str(tmp_path / "scene.png"), out)
    assert pair == (before, after) and before.size == after.size == (300, 200) and downloads == [out]
    assert np.array_equal(np.asarray(before), source)


def test_translate_geotiff_keeps_georeferencing(models, tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    array = np.random.default_rng(1).integers(0, 256, (3, 96, 128), dtype=np.uint8)
    transform = from_origin(500000, 4200000, 0.5, 0.5)
    with rasterio.open(tmp_path / "field.tif", "w", driver="GTiff", height=96, width=128, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=transform) as dst:
        dst.write(array)
    out = app.translate(models, str(tmp_path / "field.tif"), "map2sat", progress=lambda *a, **k: None)
    assert Path(out).name == "field_satellite.tif"
    with rasterio.open(out) as result:
        assert result.crs.to_epsg() == 32633 and result.transform == transform and result.shape == (96, 128)
        pixels = result.read().transpose(1, 2, 0)
    assert np.array_equal(pixels, translate_image(models.map2sat, np.ascontiguousarray(array.transpose(1, 2, 0))))
    _, _, _, (tif, png) = app.compare(str(tmp_path / "field.tif"), out)
    assert tif == out and Path(png).name == "field_satellite.png"
    assert np.array_equal(np.asarray(Image.open(png)), pixels)


def test_translate_bad_uploads(models, tmp_path, monkeypatch):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(gr.Error, match="not an image Pillow can read"):
        app.translate(models, str(tmp_path / "notes.png"), "sat2map")
    noise_png(tmp_path / "big.png", 300, 200)
    monkeypatch.setattr(app, "MAX_PIXELS", 250 * 200)
    with pytest.raises(gr.Error, match="300x200 = 0.1 megapixels, over the limit of 0.1"):
        app.translate(models, str(tmp_path / "big.png"), "sat2map")
    with pytest.raises(gr.Error, match="direction must be 'sat2map' or 'map2sat', got 'sideways'"):
        app.translate(models, str(tmp_path / "big.png"), "sideways")
    with pytest.raises(gr.Error, match="upload an image first"):
        app.translate(models, None, "sat2map")


def test_scene_to_map(models):
    scene, drawn_map = app.scene_to_map(models, "Forest", 4, 0)
    assert np.array_equal(np.asarray(scene), np.asarray(generate_images(models.dcgan, 1, 4, "Forest")[0]))
    assert drawn_map.size == scene.size == (64, 64)
    assert np.array_equal(np.asarray(drawn_map), np.asarray(translate_image(models.sat2map, scene)))


def test_output_dirs_are_cleaned_only_when_old(upload_folder):
    """Empty output folders are removed once older than CACHE_AGE, never while a request may still
    be about to fill one (bench/load_app.py caught that race)."""
    import os

    first = app.output_dir()
    second = app.output_dir()
    assert first.is_dir() and second.is_dir() and first != second  # a young empty folder survives
    old = time.time() - app.CACHE_AGE - 10
    os.utime(first, (old, old))
    app.output_dir()
    assert not first.exists() and second.is_dir()


def test_pick_seed():
    assert app.pick_seed(12, False) == 12
    seeds = {app.pick_seed(12, True) for _ in range(5)}
    assert len(seeds) > 1 and all(0 <= s <= app.MAX_SEED for s in seeds)


def test_examples_are_drawn_not_copied(tmp_path):
    """The shipped examples are exactly what examples/make_examples.py draws."""
    sys.path.insert(0, str(Path(app.__file__).parent / "examples"))
    from make_examples import draw_pair

    scene, drawn_map = draw_pair(seed=0)
    examples = Path(app.__file__).parent / "examples"
    shipped = sorted(p.name for p in examples.glob("*.png"))
    assert {"drawn_map.png", "drawn_scene.png"} <= set(shipped)
    assert all(name.startswith(("drawn_", "generated_")) for name in shipped)  # nothing else may ship
    assert np.array_equal(np.asarray(Image.open(examples / "drawn_scene.png")), np.asarray(scene))
    assert np.array_equal(np.asarray(Image.open(examples / "drawn_map.png")), np.asarray(drawn_map))


def test_class_overview_is_one_labelled_row_per_class(models):
    overview = app.class_overview(models, ["River", "Forest"], 3, 4, 0)
    assert overview.height == 2 * 66 + 2 and overview.width > 3 * 66 + 2  # a label column left of the grid
    grid = overview.crop((overview.width - (3 * 66 + 2), 0, overview.width, overview.height))
    rows = [generate_images(models.dcgan, 3, 4, name) for name in ("River", "Forest")]
    for r, images in enumerate(rows):
        for c, image in enumerate(images):
            cell = grid.crop((2 + c * 66, 2 + r * 66, 2 + c * 66 + 64, 2 + r * 66 + 64))
            assert np.array_equal(np.asarray(cell), np.asarray(image))
    for classes, per_class, message in [([], 3, "choose at least one class"), (["Desert"], 1, "unknown class 'Desert'"),
                                        (["River"] * 20, 16, "20 classes x 16 scenes is over the limit of 256")]:
        with pytest.raises(gr.Error, match=message):
            app.class_overview(models, classes, per_class, 0, 0)


def test_upload_preview_of_a_large_geotiff_is_read_in_strips_and_shrunk(models, tmp_path, monkeypatch):
    import rasterio

    array = np.random.default_rng(2).integers(0, 256, (3, 1300, 2100), dtype=np.uint8)
    with rasterio.open(tmp_path / "big.tif", "w", driver="GTiff", height=1300, width=2100, count=3,
                       dtype="uint8") as dst:
        dst.write(array)
    small = app.upload_preview(str(tmp_path / "big.tif"))
    assert small.size == (420, 260)  # 2100 / 512 -> a whole factor of 5
    box = array[:, :5, :5].reshape(3, -1).mean(axis=1)  # the first 5x5 box of each band
    assert np.abs(np.asarray(small)[0, 0].astype(float) - box).max() <= 1
    assert app.upload_preview(None) is None
    monkeypatch.setattr(app, "MAX_PIXELS", 1000 * 1000)  # over the limit: refused from the header
    with pytest.raises(gr.Error, match="over the limit"):
        app.upload_preview(str(tmp_path / "big.tif"))


def test_scene_and_map_are_enlarged_for_the_page_and_downloaded_at_native_size(models):
    scene, drawn_map = app.scene_to_map(models, "Forest", 4, 0)
    large_scene, large_map, (scene_png, map_png) = app.show_large(scene, drawn_map)
    assert large_scene.size == large_map.size == (512, 512)  # 64 px x 8, nearest neighbour
    assert np.array_equal(np.asarray(large_scene)[::8, ::8], np.asarray(scene))
    assert np.array_equal(np.asarray(Image.open(scene_png)), np.asarray(scene))
    assert np.array_equal(np.asarray(Image.open(map_png)), np.asarray(drawn_map))


def test_tools_are_named_typed_and_documented_for_the_model(models):
    tool = app.bind(app.generate, models, {"classes": "one of Forest, River", "max_images": 64, "max_seed": 9})
    assert tool.__name__ == "generate"
    assert list(inspect.signature(tool).parameters) == ["class_name", "num_images", "seed", "truncation"]
    assert "class_name: the scene class: one of Forest, River." in tool.__doc__ and "from 0 to 9" in tool.__doc__
    gallery, _, _ = tool("River", 2, 0, 0)
    assert len(gallery) == 2
