"""Transforms: PIL images -> tensors in [-1, 1] (the pixel convention of `rsgan_hub.io`).

`PairedTransform` follows pix2pix (Isola et al. 2017): resize to 286, random 256 crop and random
flip, applied identically to the satellite image and its map. Both transforms work on one image
or as `ds.with_transform(...)` on batch dicts, for a torch DataLoader.
"""

from __future__ import annotations

import torch
from PIL import Image, ImageOps

from ..io import pil_to_tensor


def _as_generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    return torch.Generator().manual_seed(generator) if isinstance(generator, int) else generator


def _resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Area averaging when shrinking (no aliasing), bicubic when enlarging."""
    if image.size == size:
        return image
    shrinking = size[0] <= image.width and size[1] <= image.height
    return image.resize(size, Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC)


def _random_symmetry(generator: torch.Generator | None, flip: bool, dihedral: bool) -> tuple[bool, int]:
    """(mirror?, quarter turns): a horizontal flip half the time when `flip` or `dihedral`, and with
    `dihedral` 0-3 turns by 90 degrees too - one of the 8 symmetries of the square."""
    mirror = (flip or dihedral) and bool(torch.rand((), generator=generator) < 0.5)
    return mirror, int(torch.randint(4, (), generator=generator)) if dihedral else 0


def _apply_symmetry(tensor: torch.Tensor, mirror: bool, turns: int) -> torch.Tensor:
    return torch.rot90(tensor.flip(-1) if mirror else tensor, turns, dims=(-2, -1))


class SceneTransform:
    """PIL scene -> (3, S, S) tensor in [-1, 1]: centre square crop, resize to `image_size`, and a
    random horizontal flip when `flip`. `dihedral` draws one of the 8 symmetries of the square (4
    rotations by 90 degrees, each flipped or not): an overhead scene seen rotated is still a valid
    scene, so this is 8x the data where a flip alone is 2x. `generator` (a torch.Generator or a seed)
    makes the draws reproducible; with DataLoader workers leave it None so each worker uses its own
    seeded torch RNG. Called on a batch dict (`ds.with_transform(SceneTransform())`) it replaces
    `batch["image"]`."""

    def __init__(self, image_size: int = 128, flip: bool = True, generator: torch.Generator | int | None = None,
                 dihedral: bool = False):
        self.image_size, self.flip, self.generator = image_size, flip, _as_generator(generator)
        self.dihedral = dihedral

    def transform(self, image: Image.Image) -> torch.Tensor:
        image = ImageOps.fit(image.convert("RGB"), (min(image.size),) * 2, method=Image.Resampling.NEAREST)
        tensor = pil_to_tensor(_resize(image, (self.image_size, self.image_size)))  # (3, S, S)
        return _apply_symmetry(tensor, *_random_symmetry(self.generator, self.flip, self.dihedral))

    def __call__(self, example):
        if isinstance(example, Image.Image):
            return self.transform(example)
        return {**example, "image": [self.transform(image) for image in example["image"]]}


class PairedTransform:
    """(PIL satellite, PIL map) -> two (3, crop, crop) tensors in [-1, 1] with the SAME geometry:
    resize both to `load_size`², crop the same `crop_size`² window (random, or central when
    `random_crop=False`), flip both or neither (pix2pix: load 286, crop 256, flip). With
    `load_size == crop_size` and `flip=False` it is deterministic, for evaluation. `dihedral` draws
    one of the square's 8 symmetries (as `SceneTransform`'s) and applies it to both: a map seen rotated
    is still the map of the rotated scene. Called on a batch dict it replaces `batch["satellite"]` and
    `batch["map"]`."""

    def __init__(self, load_size: int = 286, crop_size: int = 256, flip: bool = True, random_crop: bool = True,
                 generator: torch.Generator | int | None = None, dihedral: bool = False):
        if crop_size > load_size:
            raise ValueError(f"crop_size {crop_size} is larger than load_size {load_size}")
        self.load_size, self.crop_size, self.flip, self.random_crop = load_size, crop_size, flip, random_crop
        self.generator, self.dihedral = _as_generator(generator), dihedral

    def transform(self, satellite: Image.Image, map_image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        margin = self.load_size - self.crop_size
        if self.random_crop and margin:
            top, left = torch.randint(0, margin + 1, (2,), generator=self.generator).tolist()
        else:
            top = left = margin // 2
        symmetry = _random_symmetry(self.generator, self.flip, self.dihedral)  # one draw for both images
        out = []
        for image in (satellite, map_image):
            tensor = pil_to_tensor(_resize(image.convert("RGB"), (self.load_size, self.load_size)))
            tensor = tensor[:, top:top + self.crop_size, left:left + self.crop_size]  # (3, crop, crop)
            out.append(_apply_symmetry(tensor, *symmetry))
        return out[0], out[1]

    def __call__(self, satellite, map_image=None):
        if isinstance(satellite, Image.Image):
            return self.transform(satellite, map_image)
        pairs = [self.transform(s, m) for s, m in zip(satellite["satellite"], satellite["map"])]
        return {**satellite, "satellite": [p[0] for p in pairs], "map": [p[1] for p in pairs]}
