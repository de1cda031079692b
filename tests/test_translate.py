"""`rsgan translate` and rsgan_hub.geo: formats, GeoTIFF georeferencing, bands, 16-bit, bad input."""

import subprocess
import sys
import zlib

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from rasterio.transform import from_origin

from conftest import tiny_dcgan, tiny_pix2pix
from rsgan_hub import Pix2PixGenerator, translate_file, translate_image
from rsgan_hub.cli import main
from rsgan_hub.geo import STRETCH_PERCENTILES, open_scene, stretch, stretch_limits
from test_pipelines import smooth_image

TRANSFORM = from_origin(72.80, 19.10, 1e-5, 1e-5)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("models")
    tiny_pix2pix(direction="sat2map")[0].save_pretrained(folder / "sat2map")
    tiny_dcgan(64)[0].save_pretrained(folder / "dcgan")
    return folder


def write_raster(path, data, crs="EPSG:4326", transform=TRANSFORM, **extra):
    count, height, width = data.shape
    with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=count, dtype=data.dtype,
                       crs=crs, transform=transform, **extra) as dst:
        dst.write(data)


def rsgan(*args):
    return subprocess.run([sys.executable, "-m", "rsgan_hub", *map(str, args)], capture_output=True, text=True)


def test_geotiff_scene_keeps_georeferencing(model_dir, tmp_path):
    """The CLI end to end: a 4-band 16-bit GeoTIFF -> a georeferenced 8-bit RGB GeoTIFF of the same size."""
    rng = np.random.default_rng(0)
    data = (rng.random((4, 300, 420)) * 3000 + 500).astype(np.uint16)
    write_raster(tmp_path / "scene.tif", data, crs="EPSG:32643", transform=from_origin(273000, 2113000, 0.5, 0.5))
    r = rsgan("translate", tmp_path / "scene.tif", "--model", model_dir / "sat2map", "--out", tmp_path / "map.tif",
              "--tile", 64, "--overlap", 16, "--bands", "3,2,1", "--direction", "sat2map")
    assert r.returncode == 0, r.stderr
    with rasterio.open(tmp_path / "scene.tif") as src, rasterio.open(tmp_path / "map.tif") as out:
        assert (out.width, out.height, out.count, out.dtypes[0]) == (420, 300, 3, "uint8")
        assert out.crs == src.crs and out.transform == src.transform
        produced = out.read().transpose(1, 2, 0)
    # the same as the library on the bands picked and stretched by the documented rule
    picked = data[[2, 1, 0]]
    expected = translate_image(Pix2PixGenerator.from_pretrained(model_dir / "sat2map"),
                               stretch(picked, stretch_limits(picked)).transpose(1, 2, 0), tile=64, overlap=16)
    assert np.abs(produced.astype(int) - expected).max() <= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.tif", "scene.tif"]  # no temporary files left


@pytest.mark.parametrize("source, target", [("png", "jpg"), ("jpg", "png"), ("png", "tif"), ("tif", "png")])
def test_formats_in_and_out(model_dir, tmp_path, source, target):
    image = smooth_image(90, 130)
    if source == "tif":
        write_raster(tmp_path / "in.tif", image.transpose(2, 0, 1), crs=None, transform=None)
    else:
        Image.fromarray(image).save(tmp_path / f"in.{source}")
    g = Pix2PixGenerator.from_pretrained(model_dir / "sat2map")
    out = translate_file(g, tmp_path / f"in.{source}", tmp_path / f"out.{target}", tile=64, overlap=16)
    with open_scene(out) as scene:
        assert (scene.height, scene.width) == (90, 130) and scene.georef is None


def test_stretch_rule():
    """16-bit: per band, the 2nd percentile -> 0, the 98th -> 255, linear between, clipped outside."""
    band = np.arange(10_000, 20_000, dtype=np.uint16).reshape(1, 100, 100)
    low, high = stretch_limits(band)[0]
    assert (low, high) == tuple(np.percentile(band, STRETCH_PERCENTILES))
    out = stretch(band, [(low, high)])[0].ravel()
    assert out[:200].max() == 0 and out[-200:].min() == 255  # 2 % clipped at each end
    middle = out[5000]
    assert abs(int(middle) - round((band.ravel()[5000] - low) / (high - low) * 255)) <= 1
    masked = np.ma.masked_equal(np.array([[[0, 0, 0, 100, 200]]], np.uint16), 0)  # nodata is ignored
    assert stretch_limits(masked)[0] == tuple(np.percentile([100, 200], STRETCH_PERCENTILES))


def test_pillow_modes_and_exif(model_dir, tmp_path):
    """Grey, palette, RGBA, CMYK and 16-bit images translate; an EXIF-rotated photo is translated upright."""
    g = Pix2PixGenerator.from_pretrained(model_dir / "sat2map")
    rgb = Image.fromarray(smooth_image(40, 72))
    grey16 = Image.fromarray((np.asarray(rgb.convert("L"), np.uint16) * 200).astype(np.uint16))
    images = {"L.png": rgb.convert("L"), "P.png": rgb.convert("P"), "RGBA.png": rgb.convert("RGBA"),
              "CMYK.jpg": rgb.convert("CMYK"), "I16.png": grey16}
    for name, image in images.items():
        image.save(tmp_path / name)
        out = translate_file(g, tmp_path / name, tmp_path / f"out_{name}.png", tile=64, overlap=16)
        assert Image.open(out).size == (72, 40) and Image.open(out).mode == "RGB", name
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    rgb.save(tmp_path / "rotated.jpg", exif=exif)
    out = translate_file(g, tmp_path / "rotated.jpg", tmp_path / "rotated_out.png", tile=64, overlap=16)
    assert Image.open(out).size == (40, 72)  # upright: width and height swapped


def fake_png(width, height):
    """A PNG whose header claims width x height but whose pixel data is garbage (a decompression bomb
    stand-in): only a check made before decoding can report its size."""
    def chunk(kind, data):
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"garbage") + chunk(b"IEND", b"")


BAD_INPUTS = {
    "empty.png": (b"", "not an image Pillow can read"),
    "tiny.png": ("1x1", "is 1x1; translation needs at least 8x8"),
    "bomb.png": (fake_png(20_000, 20_000), "20000x20000 = 400.0 megapixels, over the limit of 120.0"),
    "corrupt.png": ("truncated", "cannot decode the image"),
    "notes.txt": (b"hello", "not an image Pillow can read"),
    "broken.tif": (b"II*\x00garbage", "not a raster GDAL can read"),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_inputs_fail_in_one_line_and_write_nothing(model_dir, tmp_path, capsys, name):
    content, message = BAD_INPUTS[name]
    if content == "1x1":
        Image.new("RGB", (1, 1)).save(tmp_path / name)
    elif content == "truncated":
        Image.fromarray(smooth_image(64, 64)).save(tmp_path / "full.png")
        (tmp_path / name).write_bytes((tmp_path / "full.png").read_bytes()[:300])
        (tmp_path / "full.png").unlink()
    else:
        (tmp_path / name).write_bytes(content)
    code = main(["translate", str(tmp_path / name), "--model", str(model_dir / "sat2map"),
                 "--out", str(tmp_path / "out" / "map.png")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("rsgan: error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("case, message", [
    ("dcgan", "holds a DCGANGenerator, not a Pix2PixGenerator"),
    ("direction", "the model translates sat2map, not map2sat"),
    ("bands", "has 4 band(s); --bands needs 1 or 3 indices in 1..4, got 1,2,5"),
    ("bands-png", "--bands applies to TIFF / GeoTIFF rasters only"),
    ("suffix", "output must end in .png, .jpg, .jpeg, .tif or .tiff"),
    ("limit", "over the limit of 0.0 (raise it with --max-pixels)"),
    ("missing", "no such file"),
])
def test_wrong_model_and_options(model_dir, tmp_path, capsys, case, message):
    write_raster(tmp_path / "in.tif", np.zeros((4, 32, 32), np.uint8))
    Image.new("RGB", (32, 32)).save(tmp_path / "in.png")
    args = {"dcgan": ["in.tif", "--model", model_dir / "dcgan"],
            "direction": ["in.tif", "--direction", "map2sat"],
            "bands": ["in.tif", "--bands", "1,2,5"],
            "bands-png": ["in.png", "--bands", "1,2,3"],
            "suffix": ["in.tif", "--out", tmp_path / "out.bmp"],
            "limit": ["in.tif", "--max-pixels", "100"],
            "missing": ["nope.tif"]}[case]
    argv = [str(tmp_path / args[0])] + [str(a) for a in args[1:]]
    argv += [] if "--model" in argv else ["--model", str(model_dir / "sat2map")]
    argv += [] if "--out" in argv else ["--out", str(tmp_path / "out.tif")]
    assert main(["translate", *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "in.tif"]


def test_failure_midway_leaves_no_partial_output(model_dir, tmp_path):
    """A run that fails while streaming (here: in the 4th of 6 tile rows) leaves nothing behind and
    keeps the file it would have replaced."""
    write_raster(tmp_path / "in.tif", smooth_image(300, 200).transpose(2, 0, 1))
    (tmp_path / "old.tif").write_bytes(b"keep me")
    g = Pix2PixGenerator.from_pretrained(model_dir / "sat2map")
    calls = []

    def failing(done, total):
        calls.append(done)
        if len(calls) == 4:
            raise OSError("disk went away")

    with pytest.raises(OSError, match="disk went away"):
        translate_file(g, tmp_path / "in.tif", tmp_path / "old.tif", tile=64, overlap=16, progress=failing)
    assert (tmp_path / "old.tif").read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "old.tif"]


def test_palette_and_single_band_rasters(model_dir, tmp_path):
    g = Pix2PixGenerator.from_pretrained(model_dir / "sat2map")
    grey = smooth_image(50, 60)[:, :, :1].transpose(2, 0, 1)
    write_raster(tmp_path / "grey.tif", grey)
    write_raster(tmp_path / "palette.tif", grey, photometric="palette")
    with rasterio.open(tmp_path / "palette.tif", "r+") as dst:
        dst.write_colormap(1, {i: (i, 255 - i, 0, 255) for i in range(256)})
    with open_scene(tmp_path / "palette.tif") as scene:
        rows = scene.read_rows(0, 50)
        assert np.array_equal(rows[:, :, 1], 255 - grey[0]) and np.array_equal(rows[:, :, 0], grey[0])
    for name in ("grey.tif", "palette.tif"):
        out = translate_file(g, tmp_path / name, tmp_path / f"out_{name}", tile=64, overlap=16)
        with rasterio.open(out) as result:
            assert (result.count, result.height, result.width) == (3, 50, 60) and result.crs == "EPSG:4326"
