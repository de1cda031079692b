"""Train a DCGAN on satellite scenes (Radford et al. 2016), optionally class-conditional with a
projection discriminator (Miyato & Koyama 2018), under `accelerate launch`:

    accelerate launch train/dcgan.py --dataset ../shared/data/aid_train --conditional
    accelerate launch --multi_gpu --num_processes 2 train/dcgan.py --dataset ... # 2 CPU processes (gloo)

`--preset seed` is the original project's recipe (DCGAN network, BCE with real labels ~ U(0.9, 1),
instance noise, D lr 4e-5 / G lr 4e-4). The default recipe is built for small data and short CPU
budgets: DiffAugment (Zhao et al. 2020), a hinge loss with a spectrally normalised discriminator
(Miyato et al. 2018), resize-then-convolve upsampling, a lighter generator, and a generator EMA.
Batch norm is per process (as DDP does by default); `--sync_batchnorm` switches to SyncBatchNorm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader

from rsgan_hub.augment import diff_augment
from rsgan_hub.data import SceneTransform, load_scene_dataset
from rsgan_hub.losses import (bce_discriminator_loss, bce_generator_loss, hinge_discriminator_loss,
                              hinge_generator_loss)
from rsgan_hub.models import DCGANDiscriminator, DCGANGenerator
from rsgan_hub.models.dcgan import (DISCRIMINATOR_CHANNELS, DISCRIMINATOR_STRIDES, GENERATOR_CHANNELS, START_SIZE,
                                    PADDING_MODES, RESIZE_MODES, SUPPORTED_SIZES, UPSAMPLE_MODES,
                                    check_upsampling, discriminator_layers, with_classes)
from rsgan_hub.models.fast import training_layers
from rsgan_hub.io import atomic_path
from rsgan_hub.pipelines import class_grid, latents
from rsgan_hub.training import (RunFlags, TrainingRun, adopt_release_flags, check_common_flags, flag, freeze_blocks,
                                load_release, parse_config, plain_copy, resolve_resume, save_grid)


@dataclass
class TrainConfig(RunFlags):
    """Train a DCGAN on remote-sensing scenes with accelerate."""

    preset: str = flag("default", "recipe whose values become the defaults: 'default' or 'seed' (the original)")
    dataset: str = flag("", "Hub dataset id, `rsgan dataset` folder, or a class-per-folder tree of images")
    image_column: str = flag("image", "image column of the dataset")
    label_column: str = flag("label", "class column of the dataset (used with --conditional)")
    output_dir: str = flag("outputs/dcgan", "checkpoints, samples, logs and the release (generator + discriminator/)")
    # model
    image_size: int = flag(128, "generated image side", choices=list(SUPPORTED_SIZES))
    conditional: bool = flag(False, "class-conditional G and projection D (needs a label column)")
    condition_transition: str = flag("", "transitional conditioning (Shahbazi et al. 2022): START,END optimizer "
                                     "steps - unconditional until START, the class blended in linearly until END; "
                                     "empty: conditioned from the start")
    latent_dim: int = flag(100, "length of the latent vector z", minimum=1)
    generator_channels: list = flag(None, "dense width, then width per 2x upsampling block (none: the preset's "
                                          "widths for --image_size)", minimum=1)
    discriminator_channels: list = flag(DISCRIMINATOR_CHANNELS["default"], "width per discriminator convolution (5)",
                                        minimum=1)
    kernel_size: int = flag(5, "convolution kernel size of both networks (odd)", minimum=1)
    upsample: str = flag("resize", "nearest resize + conv, bilinear resize + conv, or stride-2 transposed conv",
                         choices=list(UPSAMPLE_MODES))
    generator_padding: str = flag("zeros", "what G's resize + conv kernels see beyond the image edge: zeros, or "
                                           "the edge pixels replicated", choices=list(PADDING_MODES))
    discriminator_norm: str = flag("none", "discriminator normalisation", choices=["batch", "instance", "none"])
    spectral_norm: bool = flag(True, "spectral normalisation in the discriminator")
    sync_batchnorm: bool = flag(False, "SyncBatchNorm across GPU processes (default: per-process batch norm)")
    # objective
    loss: str = flag("hinge", "hinge, or bce (non-saturating)", choices=["hinge", "bce"])
    real_label_smoothing: float = flag(0.0, "bce only: real targets ~ U(1 - s, 1)", minimum=0)
    instance_noise: float = flag(0.0, "std of Gaussian noise added to the discriminator's inputs", minimum=0)
    diffaugment: str = flag("color,translation,cutout", "DiffAugment policy on D's inputs ('' = off)")
    flip: bool = flag(True, "random horizontal flip of the training images")
    dihedral: bool = flag(True, "random 90-degree rotations and flips of the training images (the 8 symmetries)")
    # optimisation
    learning_rate_generator: float = flag(2e-4, "Adam learning rate of G", minimum=0)
    learning_rate_discriminator: float = flag(2e-4, "Adam learning rate of D", minimum=0)
    adam_beta1: float = flag(0.5, "Adam beta1 (both networks)", minimum=0)
    adam_beta2: float = flag(0.999, "Adam beta2 (both networks)", minimum=0)
    train_batch_size: int = flag(64, "images per process per micro-step", minimum=1)
    num_epochs: int = flag(10, "epochs when --max_train_steps is none", minimum=1)
    # bookkeeping
    sample_every: int = flag(250, "write a sample grid (fixed latents) every N steps", minimum=1)
    num_samples: int = flag(64, "images in each sample grid", minimum=1)


PRESETS = {
    "default": {},
    # The original project: DCGAN network and BCE, label smoothing, instance noise, no augmentation/EMA.
    "seed": dict(discriminator_channels=DISCRIMINATOR_CHANNELS["seed"], upsample="transposed", discriminator_norm="batch",
                 spectral_norm=False, loss="bce", real_label_smoothing=0.1, instance_noise=0.1, diffaugment="",
                 learning_rate_generator=4e-4, learning_rate_discriminator=4e-5, adam_beta1=0.5, dihedral=False,
                 train_batch_size=64, ema_decay=0.0),
}


def release_flags(generator: DCGANGenerator, discriminator: DCGANDiscriminator | None) -> dict:
    """The network flags a release fixes (the discriminator's only when it has one)."""
    g = generator.init_config
    flags = dict(image_size=g["image_size"], latent_dim=g["latent_dim"], kernel_size=g["kernel_size"],
                 generator_channels=list(g["channels"] or GENERATOR_CHANNELS["default"][g["image_size"]]),
                 upsample=g["upsample"], generator_padding=g.get("padding", "zeros"),
                 conditional=generator.num_classes > 0)
    if discriminator is not None:
        d = discriminator.init_config
        layers = d["layers"] or discriminator_layers(d["image_size"], DISCRIMINATOR_CHANNELS["default"])
        flags.update(discriminator_channels=[c for c, _ in layers], discriminator_norm=d["norm"],
                     spectral_norm=d["spectral_norm"])
    return flags


@torch.no_grad()
def recalibrate_batchnorm(generator: DCGANGenerator, num_batches: int = 4, batch_size: int = 64) -> None:
    """Re-estimate batch-norm running statistics for the current (e.g. EMA) weights from fresh
    latents, so eval mode - what `from_pretrained` returns - matches these weights."""
    for m in generator.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
    generator.train()
    device = next(generator.parameters()).device
    rng = torch.Generator(device).manual_seed(0)  # its own RNG: the training RNG stream is left untouched
    for _ in range(num_batches):
        z = torch.randn(batch_size, generator.latent_dim, device=device, generator=rng)
        labels = torch.randint(generator.num_classes, (batch_size,), device=device, generator=rng) \
            if generator.num_classes else None
        generator(z, labels)
    for m in generator.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.1
    generator.eval()


def condition_schedule(spec: str, conditional: bool) -> tuple[int, int] | None:
    """--condition_transition "START,END" -> (START, END), checked; "" -> None (conditioned throughout)."""
    if not spec:
        return None
    if not conditional:
        raise SystemExit("error: --condition_transition needs --conditional (a class-conditional GAN)")
    try:
        start, end = (int(part) for part in spec.split(","))
    except ValueError:
        raise SystemExit(f"error: --condition_transition takes START,END optimizer steps, e.g. 2000,4000; "
                         f"got {spec!r}") from None
    if not 0 <= start < end:
        raise SystemExit(f"error: --condition_transition needs 0 <= START < END, got {spec!r}")
    return start, end


def condition_weight(transition: tuple[int, int] | None, step: int) -> float:
    """How much of the class the networks see at optimizer step `step`: 0 before START, 1 from END."""
    if transition is None:
        return 1.0
    start, end = transition
    return min(max((step - start) / (end - start), 0.0), 1.0)


def main(config: TrainConfig) -> None:
    # Flags: every check before anything is read or written; --init_from fixes the network flags.
    check_common_flags(config)
    released_g = released_d = None
    if config.init_from:
        released_g, released_d = load_release(config.init_from, DCGANGenerator, DCGANDiscriminator,
                                              config.fresh_discriminator, config.freeze_discriminator_layers)
        fixed = release_flags(released_g, released_d)
        if "upsample" in getattr(config, "explicit_flags", ()) and {config.upsample, fixed["upsample"]} <= RESIZE_MODES:
            # nearest and bilinear resize + conv have the same weights: a release may switch between them
            del fixed["upsample"]
            released_g = plain_copy(released_g, upsample=config.upsample)
        adopt_release_flags(config, fixed, config.init_from)
    transition = condition_schedule(config.condition_transition, config.conditional)
    if config.kernel_size % 2 == 0:
        raise SystemExit(f"error: --kernel_size must be odd, got {config.kernel_size}")
    try:
        check_upsampling(config.upsample, config.generator_padding)
    except ValueError as err:
        raise SystemExit(f"error: --upsample {config.upsample} --generator_padding {config.generator_padding}: {err}")
    if config.generator_channels is None:
        config.generator_channels = GENERATOR_CHANNELS[config.preset][config.image_size]  # models/dcgan.py
    num_blocks = int(math.log2(config.image_size // START_SIZE))
    if len(config.generator_channels) != num_blocks + 1:
        raise SystemExit(f"error: --generator_channels needs {num_blocks + 1} widths at --image_size "
                         f"{config.image_size} (the dense width, then one per 2x upsampling)")
    strides = DISCRIMINATOR_STRIDES[config.image_size]
    if released_d is None and len(config.discriminator_channels) != len(strides):
        raise SystemExit(f"error: --discriminator_channels needs {len(strides)} widths")
    checkpoint, global_step = resolve_resume(config.output_dir, config.resume_from_checkpoint)
    run = TrainingRun(config, "dcgan")
    accelerator, output_dir, device = run.accelerator, run.output_dir, run.device

    # Data: scenes -> (B, 3, S, S) in [-1, 1] and integer labels. The main process converts/caches first.
    with accelerator.main_process_first():
        dataset = load_scene_dataset(config.dataset, split="train", image_column=config.image_column,
                                     label_column=config.label_column)
    if config.conditional and "label" not in dataset.column_names:
        needs = f"the release {config.init_from} is class-conditional" if config.init_from else "--conditional needs labels"
        raise SystemExit(f"error: {needs}, but {config.dataset} has none (a folder of scenes needs one subfolder "
                         f"per class, e.g. {Path(config.dataset) / 'Stadium'})")
    run.check_data(len(dataset), "images")
    class_names = dataset.features["label"].names if config.conditional else None
    dataset = dataset.select_columns(["image", "label"] if config.conditional else ["image"])
    dataset = dataset.with_transform(SceneTransform(config.image_size, flip=config.flip, dihedral=config.dihedral))
    train_dataloader = DataLoader(dataset, batch_size=config.train_batch_size, shuffle=True, drop_last=True,
                                  num_workers=config.dataloader_num_workers,
                                  persistent_workers=config.dataloader_num_workers > 0)

    # Models: the release's (classes matched by name keep their embeddings, new ones start fresh)
    # or new ones from the flags; then the EMA (from the released generator) and fresh optimizers.
    num_classes = len(class_names) if class_names else 0
    if released_g is None:
        generator = DCGANGenerator(image_size=config.image_size, latent_dim=config.latent_dim,
                                   channels=config.generator_channels, upsample=config.upsample,
                                   padding=config.generator_padding, kernel_size=config.kernel_size, num_classes=num_classes, class_names=class_names)
    else:
        generator = with_classes(released_g, class_names) if num_classes else plain_copy(released_g)
    if released_d is None:
        discriminator = DCGANDiscriminator(image_size=config.image_size,
                                           layers=[[c, s] for c, s in zip(config.discriminator_channels, strides)],
                                           kernel_size=config.kernel_size, norm=config.discriminator_norm,
                                           spectral_norm=config.spectral_norm,
                                           num_classes=num_classes, class_names=class_names)
    else:
        discriminator = with_classes(released_d, class_names) if num_classes else plain_copy(released_d)
    if config.sync_batchnorm and accelerator.num_processes > 1:
        if accelerator.device.type == "cpu":
            raise SystemExit("error: --sync_batchnorm needs GPUs (torch's SyncBatchNorm has no CPU kernel)")
        generator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(generator)
        discriminator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(discriminator)
    training_layers(generator)  # resize + conv as sub-pixel convolutions: same weights, faster (models/fast.py)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    generator.to(memory_format=memory_format)
    discriminator.to(memory_format=memory_format)
    trainable_d = freeze_blocks(discriminator, config.freeze_discriminator_layers)
    ema = EMAModel(generator.parameters(), decay=config.ema_decay, use_ema_warmup=True) if config.ema_decay else None
    betas = (config.adam_beta1, config.adam_beta2)  # fused=True: one kernel over all weights, ~3.5x faster on CPU
    optimizer_g = torch.optim.Adam(generator.parameters(), config.learning_rate_generator, betas=betas, fused=True)
    optimizer_d = torch.optim.Adam(trainable_d, config.learning_rate_discriminator, betas=betas, fused=True)

    generator, discriminator, optimizer_g, optimizer_d, train_dataloader = accelerator.prepare(
        generator, discriminator, optimizer_g, optimizer_d, train_dataloader)
    if ema is not None:
        accelerator.register_for_checkpointing(ema)
    max_train_steps = run.schedule(train_dataloader)
    run.begin(checkpoint, global_step)  # writes the config, resumes, starts the logs
    sample_z = latents(range(config.num_samples), config.latent_dim).to(device)  # seeds 0..N-1, as `rsgan generate`
    sample_labels = torch.arange(config.num_samples, device=device) % num_classes if num_classes else None

    def d_input(images: torch.Tensor) -> torch.Tensor:
        """What the discriminator sees: DiffAugment and/or instance noise, for real and fake alike."""
        images = diff_augment(images, config.diffaugment)
        if config.instance_noise:
            images = images + config.instance_noise * torch.randn_like(images)
        return images.contiguous(memory_format=memory_format)

    def release_generator() -> DCGANGenerator:
        """A plain fp32 copy of the generator with the EMA weights and recalibrated batch norm."""
        model = plain_copy(accelerator.unwrap_model(generator))  # SyncBatchNorm has BatchNorm's keys
        if ema is not None:
            ema.copy_to(model.parameters())
        recalibrate_batchnorm(model)
        return model

    def sample_grid(model: DCGANGenerator, path: Path) -> None:
        """Fixed latents (and classes, cycling) through the generator in eval mode."""
        with torch.no_grad(), accelerator.autocast():
            images = model(sample_z, sample_labels)
        save_grid(images.float(), path, columns=8)

    # Train!
    accelerator.print(f"{len(dataset)} images, {num_classes or 'no'} classes, {accelerator.num_processes} "
                      f"process(es), {run.total_batch} images per step, {max_train_steps} steps, "
                      f"precision {accelerator.mixed_precision}"
                      + (f", from {config.init_from}" if config.init_from and checkpoint is None else ""))
    for batch in run.batches(train_dataloader):
        real = batch["image"].to(memory_format=memory_format)  # (B, 3, S, S)
        labels = batch["label"] if num_classes else None  # (B,) or None
        z = torch.randn(real.shape[0], config.latent_dim, device=device)
        condition = condition_weight(transition, run.step)  # 1 unless --condition_transition
        with accelerator.accumulate(generator, discriminator):
            # (1) Update D: push D(x) up and D(G(z)) down
            fake = generator(z, labels, condition)  # (B, 3, S, S)
            real_logits = discriminator(d_input(real), labels, condition)
            fake_logits = discriminator(d_input(fake.detach()), labels, condition)
            if config.loss == "hinge":
                loss_d = hinge_discriminator_loss(real_logits, fake_logits)
            else:
                loss_d = bce_discriminator_loss(real_logits, fake_logits, (1 - config.real_label_smoothing, 1))
            accelerator.backward(loss_d)
            optimizer_d.step()
            optimizer_d.zero_grad()

            # (2) Update G: make D call G(z) real. D is frozen so no gradient lands in it.
            discriminator.requires_grad_(False)
            fake_logits = discriminator(d_input(fake), labels, condition)
            loss_g = hinge_generator_loss(fake_logits) if config.loss == "hinge" else bce_generator_loss(fake_logits)
            accelerator.backward(loss_g)
            optimizer_g.step()
            optimizer_g.zero_grad()
            for p in trainable_d:  # all but the Freeze-D blocks
                p.requires_grad_(True)

        if not accelerator.sync_gradients:
            continue
        if ema is not None:
            ema.step(accelerator.unwrap_model(generator).parameters())
        logs = {"loss_d": loss_d, "loss_g": loss_g, "real_logit": real_logits.mean(), "fake_logit": fake_logits.mean()}
        if transition is not None:
            logs["condition"] = condition
        if run.end_step(logs, lambda path: sample_grid(release_generator(), path), release_generator):
            break  # logs, checkpoints, samples and snapshots are written when due; the time budget ran out
    run.finish()
    if (reached := condition_weight(transition, run.step)) < 1:
        accelerator.print(f"warning: training stopped at step {run.step}, before --condition_transition ended "
                          f"(class weight {reached:.2f}); the release is used fully conditioned")

    # Save: the (EMA) generator with recalibrated batch norm, its samples and loss curves, the
    # discriminator, and a model card.
    if accelerator.is_main_process:
        final = release_generator()
        if num_classes:  # the card's picture: one row of scenes per class
            with atomic_path(output_dir / "samples.png") as tmp:
                class_grid(final, per_class=8, side=96).save(tmp, format="PNG")
        else:
            sample_grid(final, output_dir / "samples.png")
        metrics = evaluate(final, config) if config.eval_split else {}
        run.save_release(final, discriminator, metrics, title=f"DCGAN ({config.preset} recipe)")
    accelerator.end_training()


def evaluate(generator: DCGANGenerator, config: TrainConfig) -> dict:
    """The model's metrics on `config.eval_split` (rsgan_hub.evaluation), printed beside real-vs-real."""
    from rsgan_hub.evaluation import card_metrics, evaluate_scene_generator, format_table

    results = evaluate_scene_generator(generator, config.dataset, split=config.eval_split,
                                       label_column=config.label_column, seed=config.seed)
    print(format_table(results, title=f"evaluation on the {config.eval_split} split"))
    return card_metrics(results)  # the card's table: the model's own numbers


if __name__ == "__main__":
    main(parse_config(TrainConfig, PRESETS))
