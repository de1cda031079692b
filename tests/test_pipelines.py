"""rsgan_hub.pipelines / tiling: latent walks, whole-image translation, seams, the fast path vs fp32."""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_dcgan, tiny_pix2pix
from rsgan_hub import Pix2PixGenerator, class_grid, generate_images, latent_walk, pipelines, translate_image
from rsgan_hub.models import fast as fast_layers
from rsgan_hub.pipelines import latents, prepare, slerp, tile_function
from rsgan_hub.tiling import axis_weights, count_tiles, tile_starts, translate_rows


def smooth_image(height, width, seed=0):
    """A synthetic (H, W, 3) uint8 scene of smooth waves (no real imagery in tests)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / 200.0
    freq = rng.uniform(2, 7, size=(3, 2))
    channels = [np.sin(fx * xx + fy * yy + i) for i, (fx, fy) in enumerate(freq)]
    return ((np.stack(channels, -1) * 0.4 + 0.5) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pix2pix():
    torch.manual_seed(0)
    return tiny_pix2pix()[0].eval()


def as_uint8(tensor):
    return tensor.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


def predict(generator, array):
    """The generator's own fp32 prediction for one uint8 crop, no tiling."""
    x = torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(127.5).sub(1)
    with torch.inference_mode():
        return as_uint8(generator(x[None])[0])


# ---- generation --------------------------------------------------------------------------------
def test_latent_walk_end_points_and_path(seeded):
    g, _ = tiny_dcgan(64, num_classes=2, class_names=["Forest", "River"])
    g.eval()
    frames = latent_walk(g, 3, 11, num_frames=6, label="River")
    assert len(frames) == 6 and all(f.size == (64, 64) for f in frames)
    first = generate_images(g, 1, seed=3, label="River")[0]
    last = generate_images(g, 1, seed=11, label="River")[0]
    # same latents as generate_images, in a batch of another size: equal up to one grey level
    assert np.abs(np.asarray(frames[0], int) - np.asarray(first, int)).max() <= 1
    assert np.abs(np.asarray(frames[-1], int) - np.asarray(last, int)).max() <= 1
    steps = [np.abs(np.asarray(a, int) - np.asarray(b, int)).mean() for a, b in zip(frames, frames[1:])]
    assert min(steps) > 0  # every frame moves
    with pytest.raises(ValueError, match="num_frames must be >= 2"):
        latent_walk(g, 0, 1, num_frames=1, label=0)
    with pytest.raises(ValueError, match="unknown class 'Desert'"):
        latent_walk(g, 0, 1, label="Desert")


def test_slerp_keeps_the_norm_linear_does_not():
    a, b = latents([0, 1], 512)
    t = torch.linspace(0, 1, 9)
    path = slerp(a, b, t)
    assert torch.allclose(path[0], a, atol=1e-5) and torch.allclose(path[-1], b, atol=1e-5)
    # two 512-d Gaussian draws are nearly orthogonal with norm ~ sqrt(512): the great circle keeps it
    assert (path.norm(dim=1) / 512**0.5 - 1).abs().max() < 0.1
    linear = (1 - t[:, None]) * a + t[:, None] * b
    assert linear[4].norm() / 512**0.5 < 0.8  # the straight line's middle is much shorter


def test_generate_bf16_matches_fp32(seeded):
    g, _ = tiny_dcgan(128)
    g.eval()
    fp32 = generate_images(g, 4, seed=5, precision="fp32")
    bf16 = generate_images(g, 4, seed=5, precision="bf16")
    diff = np.abs(np.stack([np.asarray(a, int) - np.asarray(b, int) for a, b in zip(fp32, bf16)]))
    assert diff.mean() <= 2 and diff.max() <= 16  # stated tolerance, in 8-bit levels
    with pytest.raises(ValueError, match="precision must be one of"):
        generate_images(g, 1, precision="fp16")


def test_generate_auto_without_native_bf16_is_the_fp32_copy(seeded, monkeypatch):
    """On a CPU without native bf16, "auto" runs the fp32 inference copy: rounding-level differences."""
    monkeypatch.setattr(pipelines, "bf16_supported", lambda: False)
    g, _ = tiny_dcgan(128)
    g.eval()
    fp32 = np.stack([np.asarray(a, int) for a in generate_images(g, 4, seed=5, precision="fp32")])
    auto = np.stack([np.asarray(a, int) for a in generate_images(g, 4, seed=5, precision="auto")])
    assert np.abs(fp32 - auto).max() <= 1
    assert next(prepare(g, "auto").parameters()).dtype == torch.float32


def test_class_grid_rows_are_the_classes_scenes(seeded):
    """One row per class, `per_class` scenes of seeds 0.. each, placed where the layout says."""
    g, _ = tiny_dcgan(64, num_classes=3, class_names=["Forest", "Desert", "Airport"])
    g.eval()
    sheet = np.asarray(class_grid(g, ["Airport", 0], per_class=3, seed=7))
    pad = 2
    assert sheet.shape[0] == 2 * (64 + pad) + pad
    grid = sheet[:, -(pad + 3 * (64 + pad)):]  # the scenes, right of the labels
    for row, label in enumerate(["Airport", "Forest"]):
        for col, scene in enumerate(generate_images(g, 3, seed=7, label=label)):
            top, left = pad + row * (64 + pad), pad + col * (64 + pad)
            assert np.array_equal(grid[top:top + 64, left:left + 64], np.asarray(scene))
    labels = sheet[:, :-grid.shape[1]]
    assert labels.shape[1] > 0 and (labels[:66] < 128).any() and (labels[66:] < 128).any()  # a name on each row
    assert np.asarray(class_grid(g, per_class=1, side=32)).shape[0] == 3 * (32 + pad) + pad  # all classes
    with pytest.raises(ValueError, match="unconditional"):
        class_grid(tiny_dcgan(64)[0])
    with pytest.raises(ValueError, match="Bridge"):
        class_grid(g, ["Bridge"])
    with pytest.raises(ValueError, match="per_class"):
        class_grid(g, per_class=0)


# ---- tiling geometry ---------------------------------------------------------------------------
@pytest.mark.parametrize("length, tile, overlap", [(256, 256, 64), (300, 256, 64), (7424, 256, 64), (100, 256, 32),
                                                   (513, 64, 16), (64, 64, 0), (640, 64, 0)])
def test_tiles_cover_and_weights_sum_to_one(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    side = min(tile, length)
    assert starts[0] == 0 and starts[-1] + side == length  # the last tile ends at the border
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))  # overlap at least `overlap`
    total = np.zeros(length)
    for s, w in zip(starts, axis_weights(starts, side)):
        assert (w > 0).all()
        total[s:s + side] += w
    if length % (tile - overlap) == overlap % (tile - overlap) or len(starts) == 1:  # regular grid
        np.testing.assert_allclose(total, 1.0, atol=1e-6)  # sin^2 + cos^2: a partition of unity
    assert count_tiles(length, length, tile, overlap) == len(starts) ** 2


def test_translate_rows_streams_strips():
    reads, height, width = [], 530, 300
    image = smooth_image(height, width)

    def read_rows(y0, y1):
        reads.append((y0, y1))
        return image[y0:y1]

    done = []
    rows = list(translate_rows(lambda t: t, height, width, read_rows, tile=64, overlap=16, batch_size=3,
                               progress=lambda d, t: done.append((d, t))))
    assert all(y1 - y0 == 64 for y0, y1 in reads)  # only one strip of input at a time
    assert [y for y, _ in rows] == sorted(y for y, _ in rows)
    out = np.concatenate([r for _, r in rows])
    assert out.shape == image.shape and [y for y, _ in rows][0] == 0
    assert np.abs(out.astype(int) - image).max() <= 1  # identity model: blending reproduces the input
    assert done[-1] == (count_tiles(height, width, 64, 16),) * 2 and len(done) > 1


# ---- translate_image ---------------------------------------------------------------------------
@pytest.mark.parametrize("height, width", [(64, 64), (45, 70), (130, 300), (8, 8), (257, 96)])
def test_translate_image_keeps_size_and_type(pix2pix, height, width):
    array = smooth_image(height, width)
    out = translate_image(pix2pix, array, tile=64, overlap=16, precision="fp32")
    assert isinstance(out, np.ndarray) and out.shape == (height, width, 3) and out.dtype == np.uint8
    pil = translate_image(pix2pix, Image.fromarray(array).convert("RGBA"), tile=64, overlap=16, precision="fp32")
    assert isinstance(pil, Image.Image) and pil.size == (width, height) and pil.mode == "RGB"
    assert np.array_equal(np.asarray(pil), out)
    if height <= 64 and width <= 64:  # one tile: exactly the model's own prediction (padded and cropped)
        assert np.abs(out.astype(int) - predict(pix2pix, array)).max() <= 1


def test_translate_image_errors(pix2pix):
    g, _ = tiny_dcgan(64)
    with pytest.raises(TypeError, match="needs a Pix2PixGenerator, got a DCGANGenerator"):
        translate_image(g, smooth_image(64, 64))
    with pytest.raises(ValueError, match="1x1; translation needs at least 8x8"):
        translate_image(pix2pix, np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(ValueError, match="0x5; translation needs"):
        translate_image(pix2pix, np.zeros((5, 0, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8 array, got float32"):
        translate_image(pix2pix, np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="overlap must be between 0 and tile / 2"):
        translate_image(pix2pix, smooth_image(64, 64), tile=64, overlap=40)
    with pytest.raises(ValueError, match="tile must be a multiple of 32"):
        translate_image(pix2pix, smooth_image(64, 64), tile=50)


# ---- seams -------------------------------------------------------------------------------------
def per_tile_contrast(tiles):
    """A stand-in translator whose output depends on the whole tile, as instance norm makes a
    U-Net's: each tile is contrast-normalised by its own mean and spread."""
    mean, std = tiles.mean(dim=(2, 3), keepdim=True), tiles.std(dim=(2, 3), keepdim=True)
    return torch.tanh((tiles - mean) / (std + 1e-3) * 0.5)


def seam_ratios(out, starts, tile, reach=4):
    """For each tile border line: mean |difference| of the pixel pairs across it, divided by the
    same measure on the lines within `reach` pixels on either side (1 = no seam)."""
    dx = np.abs(np.diff(out.astype(np.float32), axis=1)).mean(axis=(0, 2))  # (W - 1,)
    borders = sorted({s - 1 for s in starts if s > 0} | {s + tile - 1 for s in starts if s + tile < out.shape[1]})
    ratios = []
    for b in borders:
        near = [i for i in range(b - reach, b + reach + 1) if 0 <= i < len(dx) and i not in borders]
        ratios.append(dx[b] / dx[near].mean())
    return np.array(ratios)


@pytest.mark.parametrize("overlap", [0, 8, 16])  # 16 of 64: the default 64 of 256
def test_no_visible_seams(overlap):
    size, tile = 448, 64  # 7 tiles without overlap
    image = smooth_image(size, size)
    out = np.concatenate([rows for _, rows in translate_rows(per_tile_contrast, size, size,
                                                             lambda y0, y1: image[y0:y1], tile, overlap)])
    for view in (out, out.transpose(1, 0, 2)):  # vertical borders, then horizontal ones
        ratios = seam_ratios(view, tile_starts(size, tile, overlap), tile)
        if overlap == 0:  # the measure does see a tile grid when there is one
            assert ratios.min() > 5
        else:  # across a border, pixels differ no more than just beside it
            assert ratios.max() <= 1.1


def test_overlap_changes_exactly_the_blend_bands(pix2pix):
    """With overlap, a pixel that only one tile covers is that tile's no-overlap prediction; pixels in
    the bands shared by two tiles are blends and differ from it."""
    size, tile, overlap = 160, 64, 16
    image = smooth_image(size, size, seed=1)
    blended = translate_image(pix2pix, image, tile=tile, overlap=overlap, precision="fp32").astype(int)
    starts = tile_starts(size, tile, overlap)  # [0, 48, 96]
    covered = np.zeros((size, size), int)  # how many tiles cover each pixel
    for y in starts:
        for x in starts:
            covered[y:y + tile, x:x + tile] += 1
    single, shared = [], []
    for y in starts:
        for x in starts:
            alone = translate_image(pix2pix, image[y:y + tile, x:x + tile], tile=tile, overlap=0, precision="fp32")
            diff = np.abs(blended[y:y + tile, x:x + tile] - alone)
            only = covered[y:y + tile, x:x + tile] == 1
            single.append(diff[only])
            shared.append(diff[~only])
    single, shared = np.concatenate(single), np.concatenate(shared)
    assert single.max() <= 1  # identical up to rounding where one tile covers the pixel
    assert shared.mean() > 1 and (shared > 1).mean() > 0.3  # the bands are really blended


# ---- the fast path -----------------------------------------------------------------------------
@pytest.mark.parametrize("config", [dict(base_channels=4, num_downs=5), dict(base_channels=8, num_downs=8)])
def test_fast_path_matches_fp32(config, seeded):
    """Stated tolerance of the bf16 path against the plain fp32 model: mean |diff| <= 1 and
    max <= 8 levels of 255 on translated images; the fp32 fast copy agrees to 1e-4."""
    g = Pix2PixGenerator(**config).eval()
    with torch.no_grad():  # larger weights than the init, so that activations are not all tiny
        for p in g.parameters():
            p.mul_(3 if p.dim() > 1 else 1)
    x = torch.rand(3, 3, 256, 256) * 2 - 1
    with torch.inference_mode():
        reference = g(x)
        assert (tile_function(g, "fp32")(x) - reference).abs().max() < 1e-4
        fast = tile_function(g, "bf16")(x)
    diff = (fast - reference).abs() * 127.5
    assert diff.mean() <= 1 and diff.max() <= 8
    image = smooth_image(300, 280)
    a = translate_image(g, image, precision="fp32").astype(int)
    b = translate_image(g, image, precision="bf16").astype(int)
    assert np.abs(a - b).mean() <= 1 and np.abs(a - b).max() <= 8


def test_prepare_makes_an_explicit_copy_once(pix2pix):
    """prepare() copies the model for inference (the model itself untouched), and a prepared copy
    passed back in is used as it is: the app prepares once, every call reuses it."""
    fast = prepare(pix2pix, "bf16")
    assert fast is not pix2pix and fast.inference_precision == "bf16"
    assert next(pix2pix.parameters()).dtype == torch.float32 and not hasattr(pix2pix, "inference_precision")
    assert prepare(fast, "bf16") is fast
    with pytest.raises(ValueError, match="bf16 inference copy; prepare the model itself for fp32"):
        prepare(fast, "fp32")
    image = smooth_image(64, 64)
    assert np.array_equal(translate_image(fast, image, tile=64, overlap=0, precision="bf16"),
                          translate_image(pix2pix, image, tile=64, overlap=0, precision="bf16"))


def test_tile_batches_are_chunked_below_the_mmap_threshold(monkeypatch, seeded):
    """tile_function cuts a batch so that the largest activation stays under CHUNK_BYTES; the result
    is the same as one pass."""
    g = Pix2PixGenerator(base_channels=4, num_downs=5).eval()
    x = torch.rand(5, 3, 64, 64) * 2 - 1
    with torch.inference_mode():
        whole = tile_function(g, "fp32")(x)
        assert fast_layers.tile_chunk(g, 64, torch.float32) >= 5
        monkeypatch.setattr(fast_layers, "CHUNK_BYTES", 2 * 4 * 32 * 32 * 4 * 2)  # two tiles per chunk
        assert fast_layers.tile_chunk(g, 64, torch.float32) == 2
        calls = []
        fast = prepare(g, "fp32")
        fast.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
        chunked = tile_function(fast, "fp32")(x)
    assert calls == [2, 2, 1]  # ceil(5 / 2) = 3 chunks, as even as possible
    assert torch.allclose(chunked, whole, atol=1e-6)
