"""Training throughput: our step beside a plain baseline step, same networks, data and batch size.

The baseline trains the way the reference scripts do: fp32, contiguous (NCHW) tensors, torch.nn's
convolution layers, the default (for-loop) Adam, one D call per image pair. Ours is what
`train/dcgan.py` and `train/pix2pix.py` do with their defaults (`--mixed_precision auto`): on a CPU
with native bf16 (AVX512-BF16/AMX) bf16 autocast and channels_last activations, elsewhere fp32 and
NCHW (`rsgan_hub.hardware`: emulated bf16 is many times slower); the fused Adam kernel; for pix2pix
also `fast.training_layers` (the U-Net's small inner layers as one matrix product,
`rsgan_hub/models/fast.py`), weights left contiguous
(fused Adam would copy channels_last weights on every step: 54 M of them at batch 1) and the real
and fake pairs through D in one call. Both steps freeze D for the G step (as the reference pix2pix
and our scripts do; pytorch/examples' DCGAN also computes D's gradients there, which would only slow
the baseline). Rounds alternate between the two, so load from other processes hits both alike.
Networks: the seed DCGAN at 128² (batch 64) and the paper's
pix2pix at 256² (batch 1). Speedups are medians of per-round ratios; on a shared machine the
per-CPU-second rates printed per round are the steadier comparison. Beside them the bench prints the
step's FLOPs per image (torch's FlopCounterMode) and what this CPU's large-matrix-product rate in our
number format would allow: a step can hardly beat it. The last line is one JSON object:

    python bench/train_throughput.py            # about 10-20 minutes on a busy 2-core CPU
    python bench/train_throughput.py --quick    # smaller batches, fewer rounds: a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from rsgan_hub.hardware import bf16_supported, matmul_gflops
from rsgan_hub.losses import bce_discriminator_loss, bce_generator_loss, l1_loss
from rsgan_hub.models import DCGANDiscriminator, DCGANGenerator, PatchDiscriminator, Pix2PixGenerator
from rsgan_hub.models.fast import training_layers


class Trainer:
    """One GAN (G, D, two Adams) and one training step: the baseline's or ours (see the module docstring)."""

    def __init__(self, kind: str, fast: bool, seed: int = 0):
        torch.manual_seed(seed)  # the same initial weights for both
        self.kind, self.fast = kind, fast
        self.bf16 = fast and bf16_supported()  # as the scripts' --mixed_precision auto
        if kind == "dcgan":
            self.generator, self.discriminator = DCGANGenerator.seed(), DCGANDiscriminator.seed()
        else:
            self.generator, self.discriminator = Pix2PixGenerator(), PatchDiscriminator()
        if fast:
            training_layers(self.generator)  # the scripts' faster layers, same weights
        self.memory_format = torch.channels_last if self.bf16 else torch.contiguous_format
        for model in (self.generator, self.discriminator):
            model.train()
            if kind == "dcgan":  # as train/dcgan.py; train/pix2pix.py keeps weights contiguous (see above)
                model.to(memory_format=self.memory_format)
        # ours: the fused Adam kernel (one pass over the parameters), as in the training scripts
        self.optimizer_g = torch.optim.Adam(self.generator.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=fast)
        self.optimizer_d = torch.optim.Adam(self.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=fast)

    def autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)

    def step(self, batch: tuple[torch.Tensor, ...]) -> None:
        batch = [x.contiguous(memory_format=self.memory_format) if x.dim() == 4 else x for x in batch]
        if self.kind == "dcgan":
            real, z = batch
            with self.autocast():
                fake = self.generator(z)
                loss_d = bce_discriminator_loss(self.discriminator(real), self.discriminator(fake.detach()))
            self.optimizer_d.zero_grad()
            loss_d.backward()
            self.optimizer_d.step()
            self.discriminator.requires_grad_(False)
            with self.autocast():
                loss_g = bce_generator_loss(self.discriminator(fake))
        else:
            source, target = batch
            with self.autocast():
                fake = self.generator(source)
                real, fake_pair = torch.cat([source, target], 1), torch.cat([source, fake.detach()], 1)
                if self.fast:  # train/pix2pix.py: both pairs in one D call (instance norm: per image)
                    real_logits, fake_logits = self.discriminator(torch.cat([real, fake_pair])).chunk(2)
                else:  # the reference: two calls
                    real_logits, fake_logits = self.discriminator(real), self.discriminator(fake_pair)
                loss_d = 0.5 * bce_discriminator_loss(real_logits, fake_logits)
            self.optimizer_d.zero_grad()
            loss_d.backward()
            self.optimizer_d.step()
            self.discriminator.requires_grad_(False)
            with self.autocast():
                loss_g = bce_generator_loss(self.discriminator(torch.cat([source, fake], 1))) + 100 * l1_loss(fake, target)
        self.optimizer_g.zero_grad()
        loss_g.backward()
        self.optimizer_g.step()
        self.discriminator.requires_grad_(True)


def measure(kind: str, batch_size: int, rounds: int, steps_per_round: int) -> tuple[float, float, float, float]:
    """(baseline images/s, ours images/s, speedup, the compute ceiling's speedup): medians over
    alternating rounds. The speedup is the median of the per-round ratios - each pair of rounds ran back
    to back, under the same outside load."""
    generator = torch.Generator().manual_seed(0)
    if kind == "dcgan":
        batch = (torch.rand(batch_size, 3, 128, 128, generator=generator) * 2 - 1,
                 torch.randn(batch_size, 100, generator=generator))
    else:
        batch = tuple(torch.rand(batch_size, 3, 256, 256, generator=generator) * 2 - 1 for _ in range(2))
    trainers = {"baseline": Trainer(kind, fast=False), "ours": Trainer(kind, fast=True)}
    for trainer in trainers.values():  # warm-up: oneDNN primitive creation, allocator
        trainer.step(batch)
    rates, cpu_rates = {name: [] for name in trainers}, {name: [] for name in trainers}
    for r in range(rounds):
        for name, trainer in trainers.items():
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(steps_per_round):
                trainer.step(batch)
            images = batch_size * steps_per_round
            rates[name].append(images / (time.perf_counter() - wall))
            cpu_rates[name].append(images / (time.process_time() - cpu))  # per CPU-second of this process
        print(f"  {kind} round {r + 1}/{rounds}: baseline {rates['baseline'][-1]:.2f} img/s "
              f"({cpu_rates['baseline'][-1]:.2f} per CPU-s), ours {rates['ours'][-1]:.2f} img/s "
              f"({cpu_rates['ours'][-1]:.2f} per CPU-s), load average {os.getloadavg()[0]:.1f}", flush=True)
    ratios = [o / b for o, b in zip(rates["ours"], rates["baseline"])]
    baseline, ours = statistics.median(rates["baseline"]), statistics.median(rates["ours"])
    # The compute ceiling: the step's FLOPs (convolutions and matrix products, forward and backward,
    # counted by torch) at this CPU's large-matrix-product rate in the number format ours computes in.
    with FlopCounterMode(display=False) as counter:
        trainers["baseline"].step(batch)
    gflop = counter.get_total_flops() / 1e9 / batch_size
    peak = matmul_gflops(torch.bfloat16 if trainers["ours"].bf16 else torch.float32)
    print(f"  {kind}: {gflop:.1f} GFLOP per image; at this CPU's large-matrix-product rate ({peak:.0f} GFLOP/s) "
          f"that is {peak / gflop:.2f} img/s = {peak / gflop / baseline:.2f}x the baseline; ours runs at "
          f"{gflop * ours:.0f} GFLOP/s, the baseline at {gflop * baseline:.0f}", flush=True)
    return baseline, ours, statistics.median(ratios), peak / gflop / baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="DCGAN batch 16, 2 rounds: a smoke run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds per model")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = 2 if args.quick else args.rounds
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU {torch.backends.cpu.get_cpu_capability()}, "
          f"native bf16: {bf16_supported()} -> ours runs {'bf16 autocast' if bf16_supported() else 'fp32'}", flush=True)
    dcgan = measure("dcgan", batch_size=16 if args.quick else 64, rounds=rounds, steps_per_round=1)
    pix2pix = measure("pix2pix", batch_size=1, rounds=rounds, steps_per_round=2 if args.quick else 8)
    result = {
        "dcgan_img_s_baseline": round(dcgan[0], 3), "dcgan_img_s": round(dcgan[1], 3),
        "dcgan_speedup": round(dcgan[2], 3),
        "pix2pix_img_s_baseline": round(pix2pix[0], 3), "pix2pix_img_s": round(pix2pix[1], 3),
        "pix2pix_speedup": round(pix2pix[2], 3),
        "dcgan_ceiling_speedup": round(dcgan[3], 2), "pix2pix_ceiling_speedup": round(pix2pix[3], 2),
        "precision": "bf16" if bf16_supported() else "fp32",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
