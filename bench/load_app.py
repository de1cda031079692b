"""Load test of the Gradio app: N concurrent gradio_client clients against `python app.py` on localhost.

Each client loops, alternating /generate (--num-images scenes, a fresh seed each time) and /translate
(a --side x --side synthetic scene, uploaded each time): first --warmup seconds, then the measured
--duration seconds. The server's RSS (psutil) is read idle, after the warm-up (rss_start) and at the
end (rss_end): the baseline is the warmed-up app itself, so rss_growth is memory that load keeps
adding (a leak), not the working set that concurrency needs once. Target: 0 errors, RSS growth under
10%. The last line is one JSON object: requests, errors, p50_ms, p95_ms, rss_start_mb, rss_end_mb
(plus rss_idle_mb, rss_growth, per-endpoint counts); requests and errors count both phases, the
latencies the measured one.

    python bench/load_app.py                       # the models app.py finds (pretrained/ or fresh)
    python bench/load_app.py --duration 10 --clients 2 -- --dcgan path/to/dcgan   # args after -- go to app.py
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_app_server import running_app  # noqa: E402  (the same launcher the server tests use)


def client_loop(url: str, scene: Path, label: str | None, args, stop: float, results: list, errors: list,
                index: int) -> None:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=False, analytics_enabled=False)
    call = 0
    while time.monotonic() < stop:
        api_name = "/generate" if (call + index) % 2 == 0 else "/translate"
        inputs = ((label, args.num_images, index * 100_000 + call, 0) if api_name == "/generate"
                  else (handle_file(scene), "sat2map"))
        start = time.monotonic()
        try:
            client.predict(*inputs, api_name=api_name)
            results.append((api_name, (time.monotonic() - start) * 1000))
        except Exception as err:  # counted, and the first few shown: the target is zero
            errors.append(f"{api_name}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        call += 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=8, help="concurrent gradio_client clients (default 8)")
    p.add_argument("--duration", type=float, default=60, help="seconds of measured load (default 60)")
    p.add_argument("--warmup", type=float, default=20, help="seconds of the same load before (default 20)")
    p.add_argument("--num-images", type=int, default=4, help="scenes per /generate call (default 4)")
    p.add_argument("--side", type=int, default=256, help="side of the scene sent to /translate (default 256)")
    p.add_argument("app_args", nargs="*", help="arguments for app.py (after --)")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        scene = workdir / "scene.png"
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (args.side, args.side, 3), dtype=np.uint8)).save(scene)
        with running_app(workdir, list(args.app_args)) as (url, process):
            from gradio_client import Client

            server = psutil.Process(process.pid)
            warm = Client(url, verbose=False, download_files=False, analytics_enabled=False)
            # The class picker's default: the first class of a conditional model, None otherwise.
            api = warm.view_api(print_info=False, return_format="dict")
            label = api["named_endpoints"]["/generate"]["parameters"][0]["parameter_default"]
            rss_idle = server.memory_info().rss / 2**20

            def load(seconds: float, results: list, errors: list) -> None:
                stop = time.monotonic() + seconds
                threads = [threading.Thread(target=client_loop,
                                            args=(url, scene, label, args, stop, results, errors, i))
                           for i in range(args.clients)]
                for t in threads:
                    t.start()
                while any(t.is_alive() for t in threads):
                    time.sleep(10)
                    print(f"  {len(results)} requests, {len(errors)} errors, server RSS "
                          f"{server.memory_info().rss / 2**20:.0f} MB", file=sys.stderr)

            # Warm-up under the same load: the server's worker threads and allocator reach their
            # working set; what grows after this is what the target is about (leaks).
            warm_results, results, errors = [], [], []
            load(args.warmup, warm_results, errors)
            rss_start = server.memory_info().rss / 2**20
            load(args.duration, results, errors)
            rss_end = server.memory_info().rss / 2**20
    for message in errors[:5]:
        print("error:", message, file=sys.stderr)
    latencies = np.array([ms for _, ms in results]) if results else np.array([np.nan])
    print(json.dumps({
        "requests": len(warm_results) + len(results) + len(errors), "errors": len(errors),  # both phases
        "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p95_ms": round(float(np.percentile(latencies, 95)), 1),
        "rss_start_mb": round(rss_start, 1), "rss_end_mb": round(rss_end, 1), "rss_idle_mb": round(rss_idle, 1),
        "rss_growth": round(rss_end / rss_start - 1, 4),
        "per_endpoint": {name: sum(1 for n, _ in results if n == name) for name in ("/generate", "/translate")},
    }))


if __name__ == "__main__":
    main()
