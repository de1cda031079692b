"""Dataset conversion speed and peak memory: `rsgan_hub.data` beside the `datasets` imagefolder loader.

Both read the same raw folder into Arrow files in a fresh cache, in one process, one after the
other. The baseline, `load_dataset("imagefolder")`, only copies the files' bytes (no decoding, no
checks, no split); ours decodes every image to check and clean it (and, for pairs, cuts and
re-encodes the two halves), so the ratio is the price of those checks. Peak memory is the PSS of
this process and its worker processes, sampled every 20 ms, above the PSS before the run.

    python bench/convert_dataset.py scenes ../shared/data/aid_train --num-proc 2
    python bench/convert_dataset.py pairs ../shared/data/mumbai_train --num-proc 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time

import psutil
from datasets import load_dataset

from rsgan_hub.data import build_pair_dataset, build_scene_dataset


def tree_pss() -> int:
    """Proportional set size of this process and its workers: shared pages (torch, forked memory) count once."""
    process = psutil.Process()
    total = process.memory_full_info().pss
    for child in process.children(recursive=True):
        try:
            total += child.memory_full_info().pss
        except psutil.Error:
            pass
    return total


def measure(fn) -> tuple[float, float, object]:
    """(seconds, peak MiB above the starting PSS, result) of fn()."""
    start, peak, done = tree_pss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], tree_pss())
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    done.set()
    thread.join()
    return seconds, max(0, peak[0] - start) / 2**20, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["scenes", "pairs"])
    parser.add_argument("src")
    parser.add_argument("--num-proc", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as cache:
        def ours():
            if args.kind == "scenes":
                return build_scene_dataset(args.src, num_proc=args.num_proc, cache_dir=f"{cache}/ours")
            return build_pair_dataset(args.src, num_proc=args.num_proc, cache_dir=f"{cache}/ours")

        def baseline():
            return load_dataset("imagefolder", data_dir=args.src, cache_dir=f"{cache}/base", num_proc=args.num_proc)

        base_s, base_mb, base = measure(baseline)
        ours_s, ours_mb, (dsdict, skipped) = measure(ours)
    n_base = sum(len(d) for d in base.values())
    n_ours = sum(len(d) for d in dsdict.values()) + sum(len(v) for v in skipped.values())
    result = {"kind": args.kind, "src": args.src, "num_proc": args.num_proc, "files": n_ours,
              "ours_images_per_s": round(n_ours / ours_s, 1), "ours_peak_mib": round(ours_mb),
              "imagefolder_images_per_s": round(n_base / base_s, 1), "imagefolder_peak_mib": round(base_mb),
              "speed_ratio_ours_over_imagefolder": round((n_ours / ours_s) / (n_base / base_s), 2),
              "skipped": {k: len(v) for k, v in skipped.items()}}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
