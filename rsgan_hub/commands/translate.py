"""`rsgan translate`: satellite <-> map translation of a whole image or GeoTIFF scene with pix2pix."""

from __future__ import annotations

import argparse

from ..geo import DEFAULT_MAX_PIXELS
from . import add_overwrite, prepare_output


def _bands(text: str) -> list[int]:
    try:
        return [int(b) for b in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--bands takes comma-separated band numbers, got {text!r}") from None


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("translate", help="translate a satellite image to a map or back with a pix2pix generator",
                       description="Translate INPUT (PNG, JPEG, TIFF or GeoTIFF, any size) tile by tile with smooth "
                                   "blending; a GeoTIFF input gives a GeoTIFF output with the same CRS, transform and "
                                   "size. The output format follows --out's suffix; it is written atomically.")
    p.add_argument("input", help="input image (.png, .jpg, .tif, ...)")
    p.add_argument("--model", required=True, help="a saved Pix2PixGenerator folder or a Hub repo id")
    p.add_argument("--out", required=True, help="output file: .png, .jpg, .tif or .tiff (never the input; an "
                                                "existing file only if rsgan wrote it)")
    add_overwrite(p)
    p.add_argument("--direction", choices=["sat2map", "map2sat"], default=None,
                   help="the task you expect; refused if the model was trained for the other one")
    p.add_argument("--tile", type=int, default=256, help="tile side in pixels (default 256)")
    p.add_argument("--overlap", type=int, default=64, help="pixels shared by neighbouring tiles (default 64)")
    p.add_argument("--batch-size", type=int, default=8, help="tiles per forward pass (default 8)")
    p.add_argument("--bands", type=_bands, default=None,
                   help="raster bands to use as R,G,B (1-based; default 1,2,3) or one band as grey")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse larger inputs, checked before decoding (default {DEFAULT_MAX_PIXELS:,})")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="auto: bfloat16 where the CPU has it natively (AVX512-BF16/AMX), else fp32")
    p.add_argument("--classes", action="store_true",
                   help="write the legend class of each pixel (one band, the legend as colour table; .tif or .png) "
                        "instead of the map; needs a legend model such as the bundled sat2map")
    return p


def run(args: argparse.Namespace) -> None:
    from tqdm.auto import tqdm

    from ..geo import output_format, written_by_rsgan
    from ..models import Pix2PixGenerator
    from ..pipelines import translate_file

    fmt = output_format(args.out)  # a bad suffix is the first thing to hear about
    if args.classes and fmt == "JPEG":
        raise ValueError("--classes writes class ids, which need a lossless format: use .tif or .png")
    prepare_output(args.out, {"the input": args.input, "the model folder": args.model}, args.overwrite,
                   folder=False, ours=written_by_rsgan)
    generator = Pix2PixGenerator.from_pretrained(args.model)
    with tqdm(unit="tile", desc="translate", disable=None, leave=False) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        out = translate_file(generator, args.input, args.out, direction=args.direction, tile=args.tile,
                             overlap=args.overlap, batch_size=args.batch_size, bands=args.bands,
                             max_pixels=args.max_pixels, progress=progress, precision=args.precision,
                             classes=args.classes)
    print(f"wrote {out} ({bar.total} tiles)")
