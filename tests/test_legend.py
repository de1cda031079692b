"""Legend generators (`Pix2PixGenerator(palette=...)`): satellite -> map as per-pixel classes of the map
legend. The model's RGB is its palette rendering, round-trips through save/load and the bf16 copy,
whole-scene translation gives crisp palette maps or class rasters (GeoTIFF with a colour table), the
training script's `--legend` path trains, resumes from a release and scores per-class IoU, and a few
dozen steps on one synthetic pair drive the cross-entropy down (the step is wired right)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from rsgan_hub import Pix2PixGenerator, translate_file, translate_image
from rsgan_hub.cli import main
from rsgan_hub.evaluation import LEGEND_PALETTE, PREDICTED_CLASSES
from rsgan_hub.evaluation.translation import MAP_LEGEND, legend_classes
from rsgan_hub.io import pil_to_tensor

ROOT = Path(__file__).resolve().parents[1]
SATELLITE = {"background": (70, 90, 60), "road": (40, 40, 45), "building": (150, 140, 130), "water": (30, 60, 110)}


def tiny_legend(**kwargs) -> Pix2PixGenerator:
    return Pix2PixGenerator(base_channels=4, num_downs=5, palette=LEGEND_PALETTE, class_names=PREDICTED_CLASSES,
                            direction="sat2map", **kwargs)


def borders(ids: np.ndarray, c: int) -> np.ndarray:
    """Pixels of class c with a 4-neighbour of another class, computed on the whole image at once."""
    inside = np.pad(ids, 1, mode="edge") == c
    return inside[1:-1, 1:-1] & ~(inside[:-2, 1:-1] & inside[2:, 1:-1] & inside[1:-1, :-2] & inside[1:-1, 2:])


def synthetic_pair(size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(satellite, map) uint8 (size, size, 3): a road, a building and water in the legend's colours on
    the map, in darker colours of their own on the satellite image (with noise)."""
    rng = np.random.default_rng(seed)
    regions = np.zeros((size, size), dtype=int)  # 0 background
    r = rng.integers(4, size - 8)
    regions[:, r:r + 3] = 1  # a road
    b = rng.integers(2, size // 2 - 6)
    regions[b:b + 6, 2:8] = 2  # a building
    regions[size - 6:, size // 2:] = 3  # water
    names = ["background", "road", "building", "water"]
    map_colours = np.array([MAP_LEGEND[n][0][0] for n in names], dtype=np.uint8)
    sat_colours = np.array([SATELLITE[n] for n in names], dtype=np.float64)
    satellite = sat_colours[regions] + rng.normal(0, 6, (size, size, 3))
    return satellite.clip(0, 255).astype(np.uint8), map_colours[regions]


def test_legend_generator_renders_its_palette_and_round_trips(tmp_path):
    torch.manual_seed(0)
    g = tiny_legend().eval()
    x = torch.rand(2, 3, 40, 48) * 2 - 1
    logits = g.class_logits(x)
    assert logits.shape == (2, len(LEGEND_PALETTE), 40, 48)
    rgb = g(x)  # eval mode: each pixel's most likely class in its palette colour
    assert rgb.shape == (2, 3, 40, 48) and torch.equal(g(x, output="logits"), logits)
    palette = torch.tensor(LEGEND_PALETTE, dtype=torch.float32) / 127.5 - 1
    assert torch.allclose(rgb, palette[logits.argmax(1)].permute(0, 3, 1, 2), atol=1e-6)
    # training mode: probabilities x palette, differentiable (what the PatchGAN sees)
    g.train()
    g.up.apply(lambda m: setattr(m, "p", 0.0) if isinstance(m, torch.nn.Dropout) else None)
    soft = g(x)
    assert torch.allclose(soft, torch.einsum("bkhw,kc->bchw", logits.softmax(1), palette), atol=1e-5)
    soft.sum().backward()
    assert g.to_image[0].weight.grad.abs().sum() > 0
    g.eval()
    g.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["palette"] == LEGEND_PALETTE and config["class_names"] == PREDICTED_CLASSES
    loaded = Pix2PixGenerator.from_pretrained(tmp_path / "m")
    assert loaded.predicts_classes and torch.equal(loaded.class_logits(x), logits)
    with pytest.raises(TypeError, match="RGB, not legend classes"):
        Pix2PixGenerator(base_channels=4, num_downs=5).class_logits(x)
    with pytest.raises(ValueError, match="palette"):
        Pix2PixGenerator(palette=[[0, 0, 0]])
    with pytest.raises(ValueError, match="class_names has 1 names for 6"):
        Pix2PixGenerator(palette=LEGEND_PALETTE, class_names=["x"])


def test_translate_image_gives_crisp_maps_and_class_ids():
    torch.manual_seed(0)
    g = tiny_legend().eval()
    satellite, _ = synthetic_pair(64)
    drawn = np.asarray(translate_image(g, Image.fromarray(satellite), tile=32, overlap=8, precision="fp32"))
    colours = {tuple(c) for c in drawn.reshape(-1, 3)}
    assert colours <= {tuple(c) for c in LEGEND_PALETTE}  # only legend colours: a crisp map
    ids = translate_image(g, Image.fromarray(satellite), tile=32, overlap=8, precision="fp32", classes=True)
    assert ids.mode == "P" and ids.size == (64, 64)
    ids = np.asarray(ids)
    assert np.array_equal(np.asarray(LEGEND_PALETTE, np.uint8)[ids], drawn)
    # one tile (no blending): the classes are the argmax of the model's own logits
    small = satellite[:32, :32]
    with torch.no_grad():
        expected = g.class_logits(torch.from_numpy(small).permute(2, 0, 1)[None].float() / 127.5 - 1).argmax(1)[0]
    got = translate_image(g, small, tile=32, overlap=8, precision="fp32", classes=True)
    assert np.mean(got == expected.numpy()) > 0.999  # ties aside (probabilities quantised to 8 bits)
    with pytest.raises(ValueError, match="not legend classes"):
        translate_image(Pix2PixGenerator(base_channels=4, num_downs=5), small, classes=True)


def test_outlines_are_drawn_around_regions_without_seams():
    """With outlines, each building region gets a one-pixel border in the outline colour - the same
    pixels as a border computed on the whole image at once, so strip and tile edges add none."""
    torch.manual_seed(0)
    outline = [200, 10, 10]
    g = tiny_legend(outlines={"building": outline}).eval()
    with torch.no_grad():  # a model that draws plenty of buildings: raise the building logit's bias
        g.to_image[0].bias[PREDICTED_CLASSES.index("building")] += 0.05
    satellite, _ = synthetic_pair(200, seed=3)
    ids = translate_image(g, satellite, tile=64, overlap=16, precision="fp32", classes=True)
    drawn = translate_image(g, satellite, tile=64, overlap=16, precision="fp32")
    building = PREDICTED_CLASSES.index("building")
    expected = np.asarray(LEGEND_PALETTE, np.uint8)[ids]
    edge = borders(ids, building)
    assert 0 < edge.sum() < (ids == building).sum()  # some building regions, with insides
    expected[edge] = outline
    assert np.array_equal(drawn, expected)
    with pytest.raises(ValueError, match="outlines name classes"):
        tiny_legend(outlines={"castle": outline})


def test_rsgan_translate_classes_writes_a_palette_geotiff(tmp_path, capsys):
    import rasterio
    from rasterio.transform import from_origin

    torch.manual_seed(0)
    tiny_legend().save_pretrained(tmp_path / "legend")
    Pix2PixGenerator(base_channels=4, num_downs=5, direction="sat2map").save_pretrained(tmp_path / "rgb")
    satellite, _ = synthetic_pair(48)
    profile = dict(driver="GTiff", height=48, width=48, count=3, dtype="uint8", crs="EPSG:32643",
                   transform=from_origin(270000, 2100000, 1.0, 1.0))
    with rasterio.open(tmp_path / "scene.tif", "w", **profile) as dst:
        dst.write(satellite.transpose(2, 0, 1))
    out = tmp_path / "classes.tif"
    assert main(["translate", str(tmp_path / "scene.tif"), "--model", str(tmp_path / "legend"), "--out", str(out),
                 "--classes", "--tile", "32", "--overlap", "8"]) == 0
    with rasterio.open(out) as src:
        assert src.count == 1 and src.crs.to_epsg() == 32643 and src.transform == profile["transform"]
        ids = src.read(1)
        assert ids.max() < len(LEGEND_PALETTE)
        assert src.colormap(1)[1][:3] == tuple(LEGEND_PALETTE[1])
        assert src.tags(1)["CLASS_2"] == "road"
    # the same model's map is those classes in the legend's colours
    drawn = tmp_path / "map.tif"
    assert main(["translate", str(tmp_path / "scene.tif"), "--model", str(tmp_path / "legend"), "--out", str(drawn),
                 "--tile", "32", "--overlap", "8"]) == 0
    with rasterio.open(drawn) as src:
        assert np.array_equal(src.read().transpose(1, 2, 0), np.asarray(LEGEND_PALETTE, np.uint8)[ids])
    capsys.readouterr()
    # refused, with nothing written: a JPEG class raster, classes from an RGB model
    assert main(["translate", str(tmp_path / "scene.tif"), "--model", str(tmp_path / "legend"),
                 "--out", str(tmp_path / "c.jpg"), "--classes"]) != 0
    assert "lossless" in capsys.readouterr().err
    assert main(["translate", str(tmp_path / "scene.tif"), "--model", str(tmp_path / "rgb"),
                 "--out", str(tmp_path / "c.tif"), "--classes"]) != 0
    assert "not legend classes" in capsys.readouterr().err
    assert not (tmp_path / "c.jpg").exists() and not (tmp_path / "c.tif").exists()
    with pytest.raises(ValueError, match="lossless"):
        translate_file(tiny_legend(), tmp_path / "scene.tif", tmp_path / "d.jpg", classes=True)


def test_a_few_dozen_steps_learn_one_pair():
    """Overfit one synthetic pair: cross-entropy (the --legend objective) falls and the argmax map
    matches the real one's classes on most pixels - the cheapest proof the step is wired right."""
    torch.manual_seed(0)
    g = tiny_legend(dropout=0.0)
    satellite, real_map = synthetic_pair(32)
    source = torch.from_numpy(satellite).permute(2, 0, 1)[None].float() / 127.5 - 1
    target = legend_classes(torch.from_numpy(real_map).permute(2, 0, 1)[None])  # (1, 32, 32)
    optimizer = torch.optim.Adam(g.parameters(), lr=1e-2)
    losses = []
    for _ in range(80):
        loss = F.cross_entropy(g(source, output="logits"), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]
    with torch.no_grad():
        accuracy = (g.eval().class_logits(source).argmax(1) == target).float().mean().item()
    assert accuracy > 0.9


def legend_pairs(folder: Path, count: int = 8) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        satellite, real_map = synthetic_pair(40, seed=i)
        Image.fromarray(np.concatenate([satellite, real_map], axis=1)).save(folder / f"tile_{i}.png")


def test_train_pix2pix_legend_release_and_init_from(tmp_path):
    legend_pairs(tmp_path / "pairs")
    env = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    tiny = ["--load_size", "36", "--crop_size", "32", "--base_channels", "4", "--num_downs", "5",
            "--discriminator_channels", "4", "--num_samples", "2", "--report_to", "none",
            "--dataloader_num_workers", "0", "--sample_every", "2", "--checkpointing_steps", "100"]

    def train(*args):
        return subprocess.run([sys.executable, str(ROOT / "train" / "pix2pix.py"), "--dataset",
                               str(tmp_path / "pairs"), *tiny, *args], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=300)

    result = train("--legend", "--max_train_steps", "3", "--output_dir", str(tmp_path / "a"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "legend class weights: background 1.00" in result.stdout
    losses = (tmp_path / "a" / "losses.csv").read_text()
    assert "loss_ce" in losses and "loss_l1" not in losses
    released = Pix2PixGenerator.from_pretrained(tmp_path / "a")
    assert released.predicts_classes and released.class_names == PREDICTED_CLASSES
    # bench/logit_adjustment.py --apply: a copy of the release with shifted class logits, flagged in its config
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "logit_adjustment.py"), "--data",
                             str(tmp_path / "pairs"), "--models", str(tmp_path / "a"), "--apply", "-1", "--out",
                             str(tmp_path / "a-adjusted")], capture_output=True, text=True, cwd=tmp_path, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    shift = (Pix2PixGenerator.from_pretrained(tmp_path / "a-adjusted").to_image[0].bias
             - released.to_image[0].bias).detach()
    assert shift[0].item() == pytest.approx(0, abs=1e-6) and (shift[1:] > 0).all()  # background weighs 1
    assert json.loads((tmp_path / "a-adjusted" / "training_config.json").read_text())["logit_adjustment"] == -1
    assert (tmp_path / "a-adjusted" / "discriminator" / "config.json").is_file()
    # fine-tuning the release keeps the legend head; no discriminator run: --lambda_gan 0
    # (with a Dice term beside the cross-entropy, logged as its own loss)
    # (and the release's logits shifted back by half the class weights' logs)
    result = train("--init_from", str(tmp_path / "a"), "--lambda_gan", "0", "--lambda_dice", "1",
                   "--logit_adjustment", "0.5", "--max_train_steps", "2", "--output_dir", str(tmp_path / "b"))
    assert result.returncode == 0, result.stderr[-3000:]
    flags = json.loads((tmp_path / "b" / "training_config.json").read_text())
    assert flags["legend"] is True and flags["logit_adjustment"] == 0.5
    assert "loss_dice" in (tmp_path / "b" / "losses.csv").read_text()
    assert Pix2PixGenerator.from_pretrained(tmp_path / "b").predicts_classes
    # a legend only exists for maps
    result = train("--legend", "--direction", "map2sat", "--max_train_steps", "1", "--output_dir", str(tmp_path / "c"))
    assert result.returncode != 0 and "--legend predicts map classes" in result.stderr
    assert not (tmp_path / "c").exists()
    result = train("--lambda_dice", "1", "--max_train_steps", "1", "--output_dir", str(tmp_path / "d"))
    assert result.returncode != 0 and "--lambda_dice weighs a loss on the legend classes" in result.stderr
    assert not (tmp_path / "d").exists()
    result = train("--legend", "--class_weighting", "none", "--logit_adjustment", "1", "--max_train_steps", "1",
                   "--output_dir", str(tmp_path / "e"))
    assert result.returncode != 0 and "--logit_adjustment takes back the legend's class weights" in result.stderr
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("upsample", ["transposed", "resize"])
def test_shift_class_logits_adds_to_every_pixel(upsample):
    generator = tiny_legend(upsample=upsample).eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    offsets = torch.arange(len(LEGEND_PALETTE), dtype=torch.float32) - 2.5
    before = generator.class_logits(x)
    generator.shift_class_logits(offsets)
    assert torch.allclose(generator.class_logits(x) - before, offsets[None, :, None, None].expand_as(before),
                          atol=1e-5)
    # a large enough shift decides every pixel's class
    generator.shift_class_logits(torch.eye(len(LEGEND_PALETTE))[2] * 1e4)
    assert (generator.class_logits(x).argmax(1) == 2).all()
    with pytest.raises(ValueError, match="one per class"):
        generator.shift_class_logits([1.0, 2.0])
    with pytest.raises(TypeError, match="predicts RGB"):
        Pix2PixGenerator(base_channels=4, num_downs=5).shift_class_logits([0.0] * 3)


def test_legend_class_weights_follow_the_pixel_shares():
    from datasets import Dataset

    from rsgan_hub.evaluation.translation import legend_class_weights

    arrays = [synthetic_pair(32, seed)[1] for seed in range(3)]  # (32, 32, 3) uint8 maps
    weights, share = legend_class_weights(Dataset.from_dict({"map": [Image.fromarray(a) for a in arrays]}))
    ids = legend_classes(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2))
    expected = torch.bincount(ids.flatten(), minlength=len(PREDICTED_CLASSES) + 1)[:len(PREDICTED_CLASSES)].float()
    assert torch.allclose(share, expected / expected.sum())
    assert weights[PREDICTED_CLASSES.index("background")] == 1.0  # the commonest
    road, water = PREDICTED_CLASSES.index("road"), PREDICTED_CLASSES.index("water")
    assert weights[road] == pytest.approx((share.max() / share[road]).sqrt().item())
    assert weights[PREDICTED_CLASSES.index("zone")] == 10.0  # absent: the cap
    assert 1.0 < weights[water] < 10.0


def test_soft_dice_loss_counts_each_present_class_equally():
    from rsgan_hub.losses import soft_dice_loss

    targets = torch.zeros(1, 10, 10, dtype=torch.long)
    targets[0, 0, :] = 1  # a thin class: 10 % of the pixels
    perfect = F.one_hot(targets, 3).permute(0, 3, 1, 2).float()
    assert soft_dice_loss(perfect, targets, smooth=0).item() == pytest.approx(0.0, abs=1e-6)
    # all background: cross-entropy-like pixel accuracy 90 %, but class 1's Dice is 0, so the loss is ~0.5
    background = F.one_hot(torch.zeros_like(targets), 3).permute(0, 3, 1, 2).float()
    assert soft_dice_loss(background, targets, smooth=0).item() == pytest.approx(1 - (2 * 90 / 190) / 2, abs=1e-6)
    # (class 2 is absent from the targets, so it never counts: both losses above would differ otherwise)
    ignored = targets.clone()
    ignored[0, 0, :] = -100  # the thin row counts for nothing: the background prediction is then perfect
    assert soft_dice_loss(background, ignored, smooth=0).item() == pytest.approx(0.0, abs=1e-6)
    # gradients reach the probabilities through a softmax
    logits = torch.zeros(1, 3, 10, 10, requires_grad=True)
    soft_dice_loss(logits.softmax(1), targets).backward()
    assert logits.grad.abs().sum() > 0
    assert soft_dice_loss(logits.softmax(1), torch.full_like(targets, -100)).item() == 0.0


def test_evaluate_scores_a_legend_model_on_its_argmax(tmp_path):
    """A legend model that copies the right classes scores IoU 1 on the classes present."""
    from rsgan_hub.evaluation import evaluate_translator
    from datasets import Dataset

    satellite, real_map = synthetic_pair(32)
    dataset = Dataset.from_dict({"satellite": [Image.fromarray(satellite)], "map": [Image.fromarray(real_map)]})

    class Oracle(Pix2PixGenerator):
        def class_logits(self, x):  # the real classes, very confidently
            return F.one_hot(legend_classes(torch.from_numpy(real_map).permute(2, 0, 1)[None]),
                             len(LEGEND_PALETTE)).permute(0, 3, 1, 2).float() * 50

    oracle = Oracle(base_channels=4, num_downs=5, palette=LEGEND_PALETTE, direction="sat2map")
    results = evaluate_translator(oracle, dataset)
    assert results["legend_miou"] == 1.0 and results["nonbg_legend_acc"] == 1.0
    assert results["iou_road"] == results["iou_building"] == results["iou_water"] == 1.0
    assert np.isnan(results["iou_zone"]) and results["baseline"]["nonbg_legend_acc"] == 0.0
    assert pil_to_tensor(dataset[0]["map"]).shape == (3, 32, 32)
