"""Datasets for rsgan_hub: raw remote-sensing downloads -> Hugging Face `datasets`, one loader, transforms.

Scene datasets follow the class-per-folder layouts of RSI-CB (Li et al. 2017, "RSI-CB: A Large Scale
Remote Sensing Image Classification Benchmark via Crowdsource Data"), AID (Xia et al. 2017) and UC
Merced (Yang & Newsam 2010); paired datasets follow pix2pix (Isola et al. 2017, "Image-to-Image
Translation with Conditional Adversarial Networks"). `clean` turns any file into 8-bit RGB or a
reason to skip it; `convert` builds DatasetDicts (the `rsgan dataset` command); `load` is the one
loader behind every `--dataset`; `transforms` gives tensors in [-1, 1].

    from rsgan_hub.data import load_scene_dataset, load_pair_dataset, SceneTransform, PairedTransform
    scenes = load_scene_dataset("user/aid-scenes", split="train").with_transform(SceneTransform(128))
    pairs = load_pair_dataset("outputs/mumbai", split="test").with_transform(PairedTransform(256, 256, flip=False))
"""

from .clean import clean_image
from .convert import build_pair_dataset, build_scene_dataset, split_stratified, summarize_skipped
from .load import load_pair_dataset, load_scene_dataset
from .transforms import PairedTransform, SceneTransform

__all__ = [
    "load_scene_dataset", "load_pair_dataset", "SceneTransform", "PairedTransform", "build_scene_dataset",
    "build_pair_dataset", "split_stratified", "summarize_skipped", "clean_image",
]
