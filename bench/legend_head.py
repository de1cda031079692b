"""What the legend head costs per tile: the same U-Net with the paper's RGB output (tanh) and with the
legend output (class logits -> probabilities, blended across tiles, argmax -> palette colours), through
`translate_image` (the `rsgan translate` path), in one process, alternating round by round so that load
from other processes hits both alike; the best round of each is compared.

    python bench/legend_head.py                    # base 32 (the bundled translators), 1024^2 image
    python bench/legend_head.py --base-channels 64 --side 2048

The last line is one JSON object: ms_per_tile_rgb, ms_per_tile_legend, legend_over_rgb.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from rsgan_hub import Pix2PixGenerator, translate_image
from rsgan_hub.evaluation import LEGEND_PALETTE, PREDICTED_CLASSES
from rsgan_hub.pipelines import prepare, resolve_precision
from rsgan_hub.tiling import count_tiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-channels", type=int, default=32)
    parser.add_argument("--side", type=int, default=1024, help="side of the synthetic image translated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    args = parser.parse_args()
    torch.manual_seed(0)
    rgb = Pix2PixGenerator(base_channels=args.base_channels, direction="sat2map").eval()
    legend = Pix2PixGenerator(base_channels=args.base_channels, direction="sat2map", palette=LEGEND_PALETTE,
                              class_names=PREDICTED_CLASSES).eval()
    body = {k: v for k, v in rgb.state_dict().items() if not k.startswith("to_image")}
    legend.load_state_dict({**legend.state_dict(), **body})  # the same U-Net body; only the head differs
    models = {"rgb": prepare(rgb, args.precision), "legend": prepare(legend, args.precision)}  # prepared once
    image = np.random.default_rng(0).integers(0, 256, (args.side, args.side, 3), dtype=np.uint8)
    tiles = count_tiles(args.side, args.side)
    best = {name: float("inf") for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            start = time.perf_counter()
            translate_image(model, image, precision=args.precision)
            best[name] = min(best[name], (time.perf_counter() - start) * 1000 / tiles)
    result = {"ms_per_tile_rgb": round(best["rgb"], 2), "ms_per_tile_legend": round(best["legend"], 2),
              "legend_over_rgb": round(best["legend"] / best["rgb"], 3), "tiles": tiles,
              "precision": resolve_precision(args.precision), "base_channels": args.base_channels}
    print(f"{tiles} tiles of 256 px, {result['precision']}: RGB head {best['rgb']:.1f} ms/tile, legend head "
          f"{best['legend']:.1f} ms/tile, ratio {result['legend_over_rgb']:.3f} (the target: at most 1.10)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
