"""Inference speed and memory: rsgan_hub's translation and generation beside the baseline, in one process.

(a) baseline: the pix2pix U-Net in fp32, eager, NCHW, one 256x256 tile at a time under `torch.no_grad()`,
    the way the reference pix2pix test script runs it;
(b) ours: `rsgan_hub.pipelines` - batched tiles through the inference copy (bf16 weights where the CPU
    has native bf16, channels-last, fused instance norm) under `torch.inference_mode()`.

Both run the same tiles, alternating round by round so that load from other processes hits both alike;
the best round of each is reported (the least disturbed one), beside the arithmetic floor: the
U-Net's convolution GFLOP per tile at this CPU's measured rate for large matrix products. Then ours translates a whole
--scene x --scene GeoTIFF with `translate_file` (the `rsgan translate` code path) while a thread
samples this process's RSS; the baseline's scene time is extrapolated from its tile time and its own
tiling (no overlap). Last, 16 DCGAN images at 128x128: `generate_images` in fp32 vs `precision="auto"`.

    python bench/inference.py                          # default U-Net (base 64), synthetic 7424^2 scene
    python bench/inference.py --base-channels 32       # the smaller configuration
    python bench/inference.py --model path/to/pix2pix --scene-input scene.tif
    python bench/inference.py --threads 1 --skip-scene   # compute speed alone when other jobs load the CPU

The last line is one JSON object: tile_ms_baseline, tile_ms, tile_speedup, scene_7424_s,
scene_7424_peak_rss_mb, dcgan16_ms (and a few more keys for context).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import rasterio
import torch
from rasterio.transform import from_origin
from rasterio.windows import Window

from rsgan_hub import DCGANGenerator, Pix2PixGenerator, generate_images
from rsgan_hub.hardware import matmul_gflops
from rsgan_hub.pipelines import resolve_precision, tile_function, translate_file
from rsgan_hub.tiling import count_tiles


def synthetic_scene(path: Path, side: int) -> Path:
    """A side x side 3-band uint8 GeoTIFF of smooth waves plus noise, written strip by strip (cached)."""
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    profile = dict(driver="GTiff", height=side, width=side, count=3, dtype="uint8", crs="EPSG:32643",
                   transform=from_origin(273000, 2113000, 0.5, 0.5), tiled=True, blockxsize=256, blockysize=256)
    tmp = path.with_suffix(".part.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        for y0 in range(0, side, 512):
            rows = min(512, side - y0)
            yy, xx = np.mgrid[y0:y0 + rows, 0:side] / 300.0
            waves = np.stack([np.sin(xx + 2 * yy), np.cos(1.5 * xx - yy), np.sin(xx * 0.7 + yy * 0.3)])
            strip = (waves * 60 + 128 + rng.normal(0, 20, waves.shape)).clip(0, 255).astype(np.uint8)
            dst.write(strip, window=Window(0, y0, side, rows))
    os.replace(tmp, path)
    return path


def conv_gflop(model: torch.nn.Module, x: torch.Tensor) -> float:
    """GFLOP (2 x multiply-adds) of the convolutions of one forward pass of `model` on `x`."""
    total = [0]

    def count(module, args, out):
        if isinstance(module, torch.nn.ConvTranspose2d):  # every input pixel meets the whole kernel
            total[0] += args[0].numel() * module.out_channels * module.kernel_size[0] * module.kernel_size[1]
        else:  # every output pixel meets the whole kernel
            total[0] += out.numel() * module.in_channels * module.kernel_size[0] * module.kernel_size[1]

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    with torch.inference_mode():
        model(x)
    for hook in hooks:
        hook.remove()
    return 2 * total[0] / 1e9


def peak_rss_during(fn) -> tuple[float, float]:
    """(seconds, peak RSS in MiB of this process) while fn() runs, RSS sampled every 20 ms."""
    process, peak, done = psutil.Process(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    try:
        fn()
    finally:
        seconds = time.perf_counter() - start
        done.set()
        thread.join()
    return seconds, peak[0] / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a saved Pix2PixGenerator (default: a fresh one, same cost)")
    parser.add_argument("--base-channels", type=int, default=64, help="width of a fresh U-Net (default 64)")
    parser.add_argument("--tiles", type=int, default=16, help="256^2 tiles per round (default 16)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of baseline and ours (default 3)")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="our tiles per call, cut into chunks below glibc's mmap threshold (default 16)")
    parser.add_argument("--overlap", type=int, default=64, help="our tile overlap for the scene (default 64)")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--scene", type=int, default=7424, help="side of the synthetic scene (default 7424)")
    parser.add_argument("--scene-input", default=None, help="translate this raster instead of a synthetic scene")
    parser.add_argument("--skip-scene", action="store_true", help="tiles and DCGAN only")
    parser.add_argument("--dcgan", default=None, help="a saved DCGANGenerator (default: a fresh 128^2 one)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's); 1 shows compute speed on a machine others load")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    generator = (Pix2PixGenerator.from_pretrained(args.model) if args.model
                 else Pix2PixGenerator(base_channels=args.base_channels).eval())
    params = sum(p.numel() for p in generator.parameters()) / 1e6
    precision = resolve_precision(args.precision)
    print(f"pix2pix U-Net: {params:.1f} M parameters; ours: {precision}, batch {args.batch_size}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")

    # ---- (1) ms per 256^2 tile: baseline and ours, alternating rounds ----------------------------
    tiles = torch.rand(args.tiles, 3, 256, 256) * 2 - 1
    ours = tile_function(generator, args.precision)
    with torch.inference_mode():
        ours(tiles[: args.batch_size])  # warm-up: builds the inference copy, oneDNN primitives
    with torch.no_grad():
        generator(tiles[:1])
    baseline_ms, ours_ms = [], []
    for r in range(args.rounds):
        start = time.perf_counter()
        with torch.no_grad():
            for tile in tiles:
                generator(tile[None])
        baseline_ms.append((time.perf_counter() - start) * 1000 / len(tiles))
        start = time.perf_counter()
        with torch.inference_mode():
            for b in range(0, len(tiles), args.batch_size):
                ours(tiles[b:b + args.batch_size])
        ours_ms.append((time.perf_counter() - start) * 1000 / len(tiles))
        print(f"round {r + 1}: baseline {baseline_ms[-1]:7.1f} ms/tile   ours {ours_ms[-1]:7.1f} ms/tile")
    tile_ms_baseline, tile_ms = min(baseline_ms), min(ours_ms)
    print(f"ms per 256^2 tile: baseline {tile_ms_baseline:.1f}, ours {tile_ms:.1f} -> "
          f"{tile_ms_baseline / tile_ms:.2f}x the baseline's tiles/s")
    # The arithmetic floor: the U-Net's convolution work at this CPU's large-matrix-product rate.
    gflop = conv_gflop(generator, tiles[:1])
    peak = matmul_gflops(torch.bfloat16 if precision == "bf16" else torch.float32)
    floor_ms = gflop / peak * 1000
    print(f"U-Net: {gflop:.1f} GFLOP per tile; {precision} matrix products here: {peak:.0f} GFLOP/s -> floor "
          f"{floor_ms:.1f} ms/tile = {tile_ms_baseline / floor_ms:.2f}x the baseline at most; ours runs at "
          f"{gflop / tile_ms * 1000:.0f} GFLOP/s")

    # ---- (2) a whole scene through translate_file -------------------------------------------------
    scene_s = scene_rss = None
    if not args.skip_scene:
        source = Path(args.scene_input) if args.scene_input else synthetic_scene(
            Path(tempfile.gettempdir()) / f"rsgan_bench_scene_{args.scene}.tif", args.scene)
        with rasterio.open(source) as src:
            height, width = src.height, src.width
        ours_tiles = count_tiles(height, width, 256, args.overlap)
        baseline_tiles = math.ceil(height / 256) * math.ceil(width / 256)
        out = Path(tempfile.mkdtemp(prefix="rsgan_bench_")) / "map.tif"
        scene_s, scene_rss = peak_rss_during(lambda: translate_file(
            generator, source, out, overlap=args.overlap, batch_size=args.batch_size, precision=args.precision))
        out.unlink()
        print(f"{width}x{height} scene: ours {scene_s:.1f} s ({ours_tiles} tiles, overlap {args.overlap}), peak RSS "
              f"{scene_rss:.0f} MiB; baseline ~{tile_ms_baseline * baseline_tiles / 1000:.0f} s extrapolated "
              f"({baseline_tiles} tiles without overlap)")

    # ---- (3) 16 DCGAN images at 128^2 -------------------------------------------------------------
    dcgan = DCGANGenerator.from_pretrained(args.dcgan) if args.dcgan else DCGANGenerator(image_size=128).eval()
    label = dcgan.class_names[0] if dcgan.num_classes else None  # a conditional model needs a class
    times = {"fp32": [], args.precision: []}
    for mode in times:
        generate_images(dcgan, 16, seed=0, label=label, precision=mode)  # warm-up
    for _ in range(args.rounds):
        for mode in times:
            start = time.perf_counter()
            generate_images(dcgan, 16, seed=0, label=label, precision=mode)
            times[mode].append((time.perf_counter() - start) * 1000)
    dcgan_baseline, dcgan_ms = min(times["fp32"]), min(times[args.precision])
    print(f"16 DCGAN images at 128^2: fp32 {dcgan_baseline:.0f} ms, ours ({precision}) {dcgan_ms:.0f} ms")

    print(json.dumps({
        "tile_ms_baseline": round(tile_ms_baseline, 2), "tile_ms": round(tile_ms, 2),
        "tile_speedup": round(tile_ms_baseline / tile_ms, 2),
        "scene_7424_s": None if scene_s is None else round(scene_s, 1),
        "scene_7424_peak_rss_mb": None if scene_rss is None else round(scene_rss),
        "dcgan16_ms": round(dcgan_ms, 1), "dcgan16_ms_fp32": round(dcgan_baseline, 1),
        "unet_gflop_per_tile": round(gflop, 2), "matmul_gflops": round(peak), "tile_floor_ms": round(floor_ms, 2),
        "base_channels": generator.down[0][0].out_channels, "params_m": round(params, 1), "precision": precision,
        "threads": torch.get_num_threads(), "load_average": round(os.getloadavg()[0], 1),
    }))


if __name__ == "__main__":
    main()
