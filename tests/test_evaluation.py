"""Evaluation metrics: sanity on synthetic sets (self ~ 0, monotone in noise and blur, unbiased KID),
translation scores with known values, the scene classifier, and `rsgan evaluate` end to end."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from conftest import tiny_dcgan, tiny_pix2pix
from rsgan_hub import SceneClassifier
from rsgan_hub.cli import main
from rsgan_hub.evaluation.classify import accuracy, fit_classifier, to_uint8
from rsgan_hub.evaluation.features import ClassifierFeatures, extract_features, fid_kid, precision_recall
from rsgan_hub.evaluation.report import update_model_card
from rsgan_hub.evaluation.swd import swd
from rsgan_hub.evaluation.translation import (BACKGROUND, LEGEND_NAMES, MAP_LEGEND, PREDICTED_CLASSES, MapScores,
                                              SatelliteScores,
                                              blurred_mean_satellite, constant_map, legend_classes)
from rsgan_hub.io import tensor_to_pil


def textures(n, size=32, seed=0):
    """(n, 3, size, size) in [-1, 1]: random coloured plane waves, a stand-in for scenes."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    freq = torch.rand(n, 3, 2, generator=g) * 12 + 1
    phase = torch.rand(n, 3, 1, 1, generator=g) * 6.3
    colour = torch.rand(n, 3, 3, generator=g) * 2 - 1
    waves = torch.sin(freq[..., 0, None, None] * xx + freq[..., 1, None, None] * yy + phase)  # (n, 3, S, S)
    return (torch.einsum("nkc,nkhw->nchw", colour, waves) / 2).clamp(-1, 1)


def tiny_classifier(num_classes=3, class_names=None, image_size=32):
    torch.manual_seed(0)
    return SceneClassifier(image_size=image_size, channels=[8, 16, 32], num_classes=num_classes,
                           class_names=class_names).eval()


def all_scores(extractor, real, fake):
    fr = extract_features(extractor, real.split(100))
    ff = extract_features(extractor, fake.split(100))
    return {**fid_kid(fr, ff, kid_subset_size=100), **precision_recall(fr, ff), "swd": swd(real, fake)["swd"]}


def blur(images, sigma):
    radius = max(1, int(3 * sigma))
    k = torch.exp(-torch.arange(-radius, radius + 1).float() ** 2 / (2 * sigma**2))
    k = (k / k.sum())[None, None]
    x = images.reshape(-1, 1, *images.shape[-2:])
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k[..., None, :])
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), k[..., :, None])
    return x.reshape(images.shape)


def test_set_against_itself_and_monotone_in_noise_and_blur():
    extractor = ClassifierFeatures(tiny_classifier())
    real = textures(200, seed=1)
    same = all_scores(extractor, real, real)
    assert same["fid"] == pytest.approx(0, abs=1e-6) and same["kid_mean"] == pytest.approx(0, abs=1e-6)
    assert same["swd"] == 0 and same["precision"] == 1 and same["recall"] == 1

    noise = torch.randn(real.shape, generator=torch.Generator().manual_seed(5))
    noisy = [all_scores(extractor, real, (real + s * noise).clamp(-1, 1)) for s in (0.1, 0.2, 0.4, 0.8)]
    for key in ("fid", "kid_mean", "swd"):
        values = [same[key]] + [r[key] for r in noisy]
        assert all(a < b for a, b in zip(values, values[1:])), (key, values)
    for key in ("precision", "recall"):
        values = [same[key]] + [r[key] for r in noisy]
        assert all(a >= b for a, b in zip(values, values[1:])) and values[-1] < 0.5, (key, values)

    blurred = [all_scores(extractor, real, blur(real, s)) for s in (0.5, 1.0, 2.0)]
    for key in ("fid", "swd"):
        values = [same[key]] + [r[key] for r in blurred]
        assert all(a < b for a, b in zip(values, values[1:])), (key, values)


def test_kid_is_unbiased_on_small_sets_and_fid_is_not():
    """Two small samples of one distribution: KID averages to 0, FID is clearly positive."""
    g = torch.Generator().manual_seed(0)
    kids, fids = [], []
    for seed in range(40):
        a, b = torch.randn(2, 30, 8, generator=g, dtype=torch.float64)
        scores = fid_kid(a, b, kid_subsets=20, seed=seed)
        kids.append(scores["kid_mean"])
        fids.append(scores["fid"])
    kids, fids = torch.tensor(kids), torch.tensor(fids)
    assert abs(kids.mean()) < 2.5 * kids.std() / len(kids) ** 0.5
    assert fids.mean() > 10 * fids.std() / len(fids) ** 0.5 and (fids > 0).all()


def test_precision_recall_show_mode_collapse():
    real = torch.randn(200, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    collapsed = real[:5].repeat(40, 1) + 1e-3  # every sample near one of five real ones
    scores = precision_recall(real, collapsed)
    assert scores["precision"] == 1.0 and scores["recall"] < 0.2


def legend_map(height=16, width=16):
    """A uint8 map painted with legend colours: left half background, then a road, a building, water."""
    colour = {name: torch.tensor(MAP_LEGEND[name][0][0], dtype=torch.uint8) for name in MAP_LEGEND}
    image = colour["background"][:, None, None].repeat(1, height, width)
    image[:, :, 8:10] = colour["road"][:, None, None]
    image[:, :, 10:13] = colour["building"][:, None, None]
    image[:, :, 13:] = colour["water"][:, None, None]
    return image[None]


def test_map_scores_known_values():
    real = legend_map()
    assert legend_classes(real)[0, 0, 0] == BACKGROUND
    assert legend_classes(real)[0, 0, 15] == LEGEND_NAMES.index("water")
    scores = MapScores()
    scores.update(real, real)
    perfect = scores.compute()
    absent = {"iou_vegetation", "iou_zone"}  # not in the real map: no IoU, not in the mean
    assert all(math.isnan(perfect.pop(k)) for k in absent)
    assert perfect == {"pixel_acc_8": 1.0, "pixel_acc_16": 1.0, "pixel_acc_32": 1.0, "nonbg_acc_16": 1.0,
                       "legend_miou": 1.0, "nonbg_legend_acc": 1.0, "iou_background": 1.0, "iou_building": 1.0,
                       "iou_road": 1.0, "iou_water": 1.0, "rmse": 0.0}
    # The constant background image. Road and building colours are within 16 levels of the background,
    # so pixel accuracy counts them right (13 of 16 columns): why the legend mIoU is reported too.
    constant = MapScores()
    constant.update(constant_map(real), real)
    result = constant.compute()
    assert result["pixel_acc_16"] == 13 / 16 and result["nonbg_acc_16"] == 5 / 8
    assert result["legend_miou"] == pytest.approx((0.5 + 0 + 0 + 0) / 4)  # background IoU 8/16; the rest 0
    assert result["iou_background"] == 0.5 and result["iou_road"] == result["iou_water"] == 0.0
    assert result["nonbg_legend_acc"] == 0.0  # no road, building or water pixel drawn as such
    # An error of exactly 20 levels in one channel: wrong at delta 8 and 16, right at 32.
    shifted = real.clone()
    shifted[:, 2] = (shifted[:, 2].int() - 20).clamp(0, 255).to(torch.uint8)
    off = MapScores()
    off.update(shifted, real)
    assert (off.compute()["pixel_acc_16"], off.compute()["pixel_acc_32"]) == (0.0, 1.0)


def test_satellite_scores_and_baseline():
    real = to_uint8(textures(4, size=32))
    same = SatelliteScores()
    same.update(real, real)
    assert same.compute() == {"l1": 0.0, "rmse": 0.0, "psnr": 100.0, "ssim": pytest.approx(1.0)}
    worse = SatelliteScores()
    worse.update(to_uint8(blur(textures(4, size=32), 2.0)), real)
    assert worse.compute()["l1"] > 0 and worse.compute()["ssim"] < 0.95 and worse.compute()["psnr"] < 40
    baseline = blurred_mean_satellite(legend_map())
    assert baseline.shape == (1, 3, 16, 16) and baseline.dtype == torch.uint8
    assert tuple(baseline[0, :, 0, 0].tolist()) == MAP_LEGEND["background"][1]  # far from other classes


def test_scene_classifier_round_trip_and_learning(tmp_path):
    model = tiny_classifier(2, ["Red", "Blue"])
    model.save_pretrained(tmp_path / "c")
    loaded = SceneClassifier.from_pretrained(tmp_path / "c")
    x = textures(4, size=48)  # any input size is resized to image_size
    with torch.no_grad():
        assert torch.equal(loaded.features(x), model.features(x)) and loaded.features(x).shape == (4, 32)
    assert loaded.class_names == ["Red", "Blue"] and loaded.class_index("blue") == 1
    # a separable toy task: reddish vs bluish textures
    images = to_uint8(textures(64, size=32) * 0.3)
    labels = torch.arange(64) % 2
    images[labels == 0, 0] = 230
    images[labels == 1, 2] = 230
    fit_classifier(model, images, labels, epochs=3, batch_size=16)
    assert accuracy(model, images, labels)[0] == 1.0


def write_scene_tree(root, classes=("Forest", "River"), per_class=30, size=40):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i, image in enumerate(textures(per_class, size=size, seed=c)):
            image[c] = image[c] * 0.3 + 0.6  # class c is tinted by channel c
            tensor_to_pil(image).save(root / name / f"{i}.png")


def test_rsgan_evaluate_scene_generator(tmp_path, capsys):
    write_scene_tree(tmp_path / "scenes")
    tiny_classifier(2, ["Forest", "River"]).save_pretrained(tmp_path / "classifier")
    generator, _ = tiny_dcgan(64, num_classes=2, class_names=["forest", "River"])
    generator.save_pretrained(tmp_path / "g")
    out = tmp_path / "results.json"
    code = main(["evaluate", "--model", str(tmp_path / "g"), "--dataset", str(tmp_path / "scenes"), "--split",
                 "test", "--num-images", "20", "--classifier", str(tmp_path / "classifier"), "--cas-epochs", "1",
                 "--out", str(out), "--update-card", "--dataset-name", "user/toy-scenes"])
    assert code == 0
    results = json.loads(out.read_text())
    keys = {"fid", "kid_mean", "kid_std", "swd", "precision", "recall", "class_accuracy", "cas_accuracy",
            "real_trained_accuracy"}
    assert keys <= set(results) and keys <= set(results["baseline"])
    assert results["fid"] > results["baseline"]["fid"]  # an untrained generator is worse than real images
    assert results["info"]["num_generated"] == 20 and results["info"]["num_real"] == 6  # 10 % of 30 per class
    printed = capsys.readouterr().out
    assert "metric" in printed and "baseline: real train" in printed
    text = (tmp_path / "g" / "README.md").read_text()
    meta = yaml.safe_load(text.split("---\n")[1])
    result = meta["model-index"][0]["results"][0]
    assert result["dataset"] == {"name": "user/toy-scenes", "type": "user/toy-scenes", "split": "test"}
    assert {m["type"]: m["value"] for m in result["metrics"]}["fid"] == pytest.approx(results["fid"])
    assert "## Evaluation" in text and "How to use" in text  # the rest of the card is kept
    assert meta["datasets"] == ["user/toy-scenes"]
    # a local folder is named in the results, but the `datasets` metadata (Hub links) lists Hub ids only
    update_model_card(tmp_path / "g", results, str(tmp_path / "scenes"), "test")
    meta = yaml.safe_load((tmp_path / "g" / "README.md").read_text().split("---\n")[1])
    assert meta["datasets"] == ["user/toy-scenes"]
    assert meta["model-index"][0]["results"][0]["dataset"]["name"] == str(tmp_path / "scenes")


def write_pairs(root, n=3, size=32):
    """Side-by-side satellite | map pairs in train/ and test/ folders (the same maps, other imagery)."""
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        for i in range(n):
            satellite = tensor_to_pil(textures(1, size=size, seed=i + (100 if split == "test" else 0))[0])
            map_image = tensor_to_pil(legend_map(size, size)[0].float().div(127.5).sub(1))
            pair = Image.new("RGB", (2 * size, size))
            pair.paste(satellite, (0, 0))
            pair.paste(map_image, (size, 0))
            pair.save(root / split / f"pair_{i}.png")


@pytest.mark.parametrize("direction", ["sat2map", "map2sat"])
def test_rsgan_evaluate_translator(tmp_path, direction):
    write_pairs(tmp_path / "pairs", size=16)
    tiny_classifier().save_pretrained(tmp_path / "classifier")
    generator, _ = tiny_pix2pix(direction=direction)
    generator.save_pretrained(tmp_path / "p")
    out = tmp_path / "results.json"
    assert main(["evaluate", "--model", str(tmp_path / "p"), "--dataset", str(tmp_path / "pairs"),
                 "--classifier", str(tmp_path / "classifier"), "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    keys = ({"pixel_acc_8", "pixel_acc_16", "pixel_acc_32", "nonbg_acc_16", "legend_miou", "nonbg_legend_acc", "rmse"}
            | {f"iou_{name}" for name in PREDICTED_CLASSES} if direction == "sat2map" else {"l1", "rmse", "psnr", "ssim", "fid", "kid_mean"})
    assert set(results) - {"baseline", "info", "reference"} == keys and set(results["baseline"]) == keys
    if direction == "sat2map":  # the synthetic maps, scaled to 16 px: a quarter water, the rest near-white
        assert results["baseline"]["pixel_acc_16"] == 13 / 16 and results["baseline"]["legend_miou"] == 0.125
        assert "reference" not in results
    else:  # real train tiles against the real test tiles: the FID/KID floor
        reference = results["reference"]
        assert (reference["split"], reference["num_images"]) == ("train", 3) and reference["fid"] >= 0


def test_map2sat_reference_is_real_against_real(tmp_path, capsys):
    """The real-vs-real floor compares the right images: the test tiles against themselves score FID ~0,
    far below the train tiles against them; `--reference-split none` leaves it out."""
    write_pairs(tmp_path / "pairs", size=16)
    tiny_classifier().save_pretrained(tmp_path / "classifier")
    generator, _ = tiny_pix2pix(direction="map2sat")
    generator.save_pretrained(tmp_path / "p")
    common = ["evaluate", "--model", str(tmp_path / "p"), "--dataset", str(tmp_path / "pairs"),
              "--classifier", str(tmp_path / "classifier")]
    assert main([*common, "--reference-split", "test", "--out", str(tmp_path / "same.json")]) == 0
    assert "real vs real: 3 real test tiles" in capsys.readouterr().out
    assert main([*common, "--out", str(tmp_path / "train.json")]) == 0  # other imagery, the same maps
    same, other = (json.loads((tmp_path / f"{name}.json").read_text())["reference"]["fid"]
                   for name in ("same", "train"))
    assert abs(same) < other / 10
    assert main([*common, "--reference-split", "none", "--out", str(tmp_path / "none.json")]) == 0
    assert "reference" not in json.loads((tmp_path / "none.json").read_text())
    assert main([*common, "--reference-split", "validation", "--out", str(tmp_path / "bad.json")]) == 1
    assert "no split 'validation'; available: " in capsys.readouterr().err


def test_rsgan_evaluate_clear_errors(tmp_path, capsys):
    tiny_classifier().save_pretrained(tmp_path / "classifier")
    write_scene_tree(tmp_path / "scenes")
    out = tmp_path / "r.json"
    assert main(["evaluate", "--model", str(tmp_path / "classifier"), "--dataset", str(tmp_path / "scenes"),
                 "--out", str(out)]) == 1
    assert "holds a SceneClassifier; rsgan evaluate scores DCGANGenerator" in capsys.readouterr().err
    generator, _ = tiny_dcgan(64)
    generator.save_pretrained(tmp_path / "g")
    assert main(["evaluate", "--model", str(tmp_path / "g"), "--dataset", str(tmp_path / "scenes"), "--split",
                 "validation", "--classifier", str(tmp_path / "classifier"), "--out", str(out)]) == 1
    assert "no split 'validation'; available: " in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "g"), "--dataset", str(tmp_path / "scenes"),
                 "--features", "inception", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("rsgan: error: --features inception") and len(err.splitlines()) == 1
    assert not out.exists()
