"""Whole-scene translation by overlapping tiles, the overlap-tile strategy of the U-Net paper
(Ronneberger et al. 2015, "U-Net: Convolutional Networks for Biomedical Image Segmentation")
applied to a pix2pix generator, with smooth blending so that no tile grid shows.

Tiles of `tile` x `tile` pixels start every `tile - overlap` pixels; the last tile of a row or
column is moved back to end exactly at the image border, so no side needs to be a multiple of the
tile (an image smaller than a tile is one tile, which the generator reflect-pads and crops back).
Where two tiles overlap, each output pixel is a weighted mean of both predictions; a tile's weight
rises as sin^2 across the overlap with its neighbour and is 1 elsewhere, so neighbouring weights sum
to one and the blend is smooth. Pixels covered by a single tile are that tile's prediction exactly.

Memory is bounded by one row of tiles: the scene is read, translated and emitted one strip at a
time (`translate_rows`), so beside the model a scene needs one input strip and a float32 accumulator
of `tile x width x channels` (23 MB for a 7424-pixel-wide scene in RGB; a legend model blends its
class probabilities, 6 channels), whatever its height.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch

# (B, 3, th, tw) float32 in [-1, 1] -> (B, channels, th, tw) in [-1, 1]; see pipelines.translate_image.
TileFunction = Callable[[torch.Tensor], torch.Tensor]
# (y0, y1) -> (y1 - y0, width, 3) uint8 rows of the input.
RowReader = Callable[[int, int], np.ndarray]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of the tiles along one axis of `length` pixels."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    count = math.ceil((length - overlap) / stride)
    return [min(i * stride, length - tile) for i in range(count)]


def axis_weights(starts: list[int], tile: int) -> np.ndarray:
    """(len(starts), tile) blending weights along one axis: sin^2 ramps across each overlap."""
    weights = np.ones((len(starts), tile), dtype=np.float64)
    for i in range(len(starts) - 1):
        width = starts[i] + tile - starts[i + 1]  # overlap with the next tile (0 if they only touch)
        if width > 0:
            ramp = np.sin(0.5 * np.pi * (np.arange(width) + 0.5) / width) ** 2  # (0, 1), never 0
            weights[i + 1, :width] *= ramp
            weights[i, tile - width:] *= ramp[::-1]
    return weights.astype(np.float32)


def count_tiles(height: int, width: int, tile: int = 256, overlap: int = 64) -> int:
    """How many tiles `translate_rows` runs for an image of height x width."""
    return len(tile_starts(height, tile, overlap)) * len(tile_starts(width, tile, overlap))


def check_tiling(tile: int, overlap: int, batch_size: int) -> None:
    if tile < 32 or tile % 32:
        raise ValueError(f"tile must be a multiple of 32 and >= 32, got {tile}")
    if not 0 <= overlap <= tile // 2:
        raise ValueError(f"overlap must be between 0 and tile / 2 = {tile // 2}, got {overlap}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def translate_rows(
    model: TileFunction,
    height: int,
    width: int,
    read_rows: RowReader,
    tile: int = 256,
    overlap: int = 64,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
    channels: int = 3,
    as_uint8: bool = True,
) -> Iterator[tuple[int, np.ndarray]]:
    """Translate a height x width scene strip by strip; yields (y0, rows) with rows a
    (n, width, channels) uint8 array ([-1, 1] mapped to 0..255), top to bottom, covering every row
    exactly once. `channels`: what the model returns per pixel (3 for RGB; class probabilities for
    a legend model). as_uint8=False: the blended float32 predictions themselves."""
    check_tiling(tile, overlap, batch_size)
    th, tw = min(tile, height), min(tile, width)
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    wy, wx = axis_weights(ys, th), axis_weights(xs, tw)
    # The weights of a full grid of tiles sum to norm_y[y] * norm_x[x]: divide by that at the end.
    norm_y, norm_x = np.zeros(height, np.float32), np.zeros(width, np.float32)
    for y, w in zip(ys, wy):
        norm_y[y:y + th] += w
    for x, w in zip(xs, wx):
        norm_x[x:x + tw] += w
    wy_t, wx_t = torch.from_numpy(wy), torch.from_numpy(wx)
    norm_x_t = torch.from_numpy(norm_x).view(1, width, 1)
    total, done = len(ys) * len(xs), 0
    # Everything is kept height-width-channel: a channels-last (B, 3, h, w) tensor is a (B, h, w, 3)
    # array in memory, so tiles go in and predictions come out without transposing copies.
    acc = torch.zeros(th, width, channels)  # weighted sum of predictions for rows [ys[r], ys[r] + th)
    for r, y in enumerate(ys):
        strip = read_rows(y, y + th)  # (th, width, 3) uint8
        for b in range(0, len(xs), batch_size):
            batch_xs = xs[b:b + batch_size]
            tiles = torch.from_numpy(np.stack([strip[:, x:x + tw] for x in batch_xs])).float()  # (B, th, tw, 3)
            tiles = tiles.div_(127.5).sub_(1.0).permute(0, 3, 1, 2)  # (B, 3, th, tw) in [-1, 1], channels-last
            out = model(tiles).float().permute(0, 2, 3, 1)  # (B, th, tw, channels)
            weight = wy_t[r].view(1, th, 1, 1) * wx_t[b:b + len(batch_xs)].view(-1, 1, tw, 1)  # (B, th, tw, 1)
            out = out.mul_(weight) if out.is_contiguous() else out * weight
            for i, x in enumerate(batch_xs):
                acc[:, x:x + tw] += out[i]
            done += len(batch_xs)
            if progress is not None:
                progress(done, total)
        # Rows above the next tile row receive no more predictions: normalise and emit them.
        end = ys[r + 1] if r + 1 < len(ys) else y + th
        rows = end - y
        norm = torch.from_numpy(norm_y[y:end]).view(rows, 1, 1) * norm_x_t  # (rows, width, 1)
        blended = acc[:rows].div_(norm)
        yield y, blended.clamp_(-1, 1).add_(1).mul_(127.5).round_().to(torch.uint8).numpy() if as_uint8 \
            else blended.numpy()
        # The rows still being accumulated move to the top of a fresh buffer.
        acc = torch.cat([acc[rows:], torch.zeros(rows, width, channels)])
