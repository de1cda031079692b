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

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, broadcast, set_seed
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from rsgan_hub.augment import diff_augment
from rsgan_hub.data import SceneTransform, load_scene_dataset
from rsgan_hub.hardware import MIXED_PRECISIONS, channels_last_default, training_precision
from rsgan_hub.losses import (bce_discriminator_loss, bce_generator_loss, hinge_discriminator_loss,
                              hinge_generator_loss)
from rsgan_hub.models import DCGANDiscriminator, DCGANGenerator
from rsgan_hub.models.dcgan import DEFAULT_DISCRIMINATOR_LAYERS
from rsgan_hub.pipelines import latents
from rsgan_hub.training import (LossLog, TrainingClock, distributed_on_cpu, find_checkpoint, flag,
                                load_training_state, parse_config, save_checkpoint, save_config, save_grid,
                                training_markdown)


@dataclass
class TrainConfig:
    """Train a DCGAN on remote-sensing scenes with accelerate."""

    preset: str = flag("default", "recipe whose values become the defaults: 'default' or 'seed' (the original)")
    dataset: str = flag("", "Hub dataset id, `rsgan dataset` folder, or a class-per-folder tree of images")
    image_column: str = flag("image", "image column of the dataset")
    label_column: str = flag("label", "class column of the dataset (used with --conditional)")
    eval_split: str = flag(None, "split to evaluate the final generator on, e.g. 'test' (none: skip)")
    dataset_name: str = flag(None, "how the model card names the data (default: the --dataset value)")
    output_dir: str = flag("outputs/dcgan", "checkpoints, samples, logs and the final model")
    seed: int = flag(0, "seed of the run (each process adds its rank)")
    # model
    image_size: int = flag(128, "generated image side: 64, 128 or 256")
    conditional: bool = flag(False, "class-conditional G and projection D (needs a label column)")
    latent_dim: int = flag(100, "length of the latent vector z")
    generator_channels: list = flag([256, 256, 128, 64, 32], "dense width, then width per 2x upsampling block")
    discriminator_channels: list = flag([32, 64, 128, 256, 256], "width per discriminator convolution")
    kernel_size: int = flag(5, "convolution kernel size of both networks (odd)")
    upsample: str = flag("resize", "'resize' (nearest + conv) or 'transposed' (stride-2 transposed conv)")
    discriminator_norm: str = flag("none", "'batch', 'instance' or 'none'")
    spectral_norm: bool = flag(True, "spectral normalisation in the discriminator")
    sync_batchnorm: bool = flag(False, "SyncBatchNorm across GPU processes (default: per-process batch norm)")
    # objective
    loss: str = flag("hinge", "'hinge' or 'bce' (non-saturating)")
    real_label_smoothing: float = flag(0.0, "bce only: real targets ~ U(1 - s, 1)")
    instance_noise: float = flag(0.0, "std of Gaussian noise added to the discriminator's inputs")
    diffaugment: str = flag("color,translation,cutout", "DiffAugment policy on D's inputs ('' = off)")
    flip: bool = flag(True, "random horizontal flip of the training images")
    dihedral: bool = flag(False, "random 90-degree rotations and flips of the training images (the 8 symmetries)")
    # optimisation
    learning_rate_generator: float = flag(2e-4, "Adam learning rate of G")
    learning_rate_discriminator: float = flag(2e-4, "Adam learning rate of D")
    adam_beta1: float = flag(0.5, "Adam beta1 (both networks)")
    adam_beta2: float = flag(0.999, "Adam beta2 (both networks)")
    train_batch_size: int = flag(64, "images per process per micro-step")
    gradient_accumulation_steps: int = flag(1, "micro-steps per optimizer step")
    max_train_steps: int = flag(None, "optimizer steps (none: --num_epochs epochs)")
    num_epochs: int = flag(10, "epochs when --max_train_steps is none")
    max_train_minutes: float = flag(None, "also stop after this many minutes of this session (--budget_clock)")
    budget_clock: str = flag("wall", "clock of --max_train_minutes / --snapshot_minutes: 'wall' or 'cpu' "
                                     "(this process's CPU time: fair between runs sharing the cores)")
    snapshot_minutes: str = flag("", "comma-separated minutes at which to save the release generator to "
                                     "snapshot-<M>min/, e.g. '5,10' (budget studies)")
    ema_decay: float = flag(0.999, "generator EMA decay, warmed up from 0 (0: no EMA)")
    # speed
    mixed_precision: str = flag("auto", "'auto' (bf16 where the CPU/GPU has it natively, else fp32), 'no', 'bf16' or 'fp16'")
    channels_last: bool = flag(None, "channels_last memory format (none: on under bf16/fp16 or on a GPU, off in fp32 on a CPU)")
    dataloader_num_workers: int = flag(1, "DataLoader worker processes per training process")
    # bookkeeping
    checkpointing_steps: int = flag(500, "save a resumable checkpoint every N steps")
    checkpoints_total_limit: int = flag(2, "keep at most N checkpoints (0: all)")
    resume_from_checkpoint: str = flag(None, "'latest' or a checkpoint-<step> folder")
    sample_every: int = flag(250, "write a sample grid (fixed latents) every N steps")
    num_samples: int = flag(64, "images in each sample grid")
    logging_steps: int = flag(10, "log losses every N steps")
    report_to: str = flag("tensorboard", "'tensorboard', 'trackio' or 'none'")
    save_fp16: bool = flag(False, "store the released weights in fp16 (half the size; loading casts to fp32)")
    push_to_hub: bool = flag(False, "push the final generator with `push_to_hub`")
    hub_model_id: str = flag(None, "repo id for --push_to_hub (default: output_dir's name)")


PRESETS = {
    "default": {},
    # The original project: DCGAN network and BCE, label smoothing, instance noise, no augmentation/EMA.
    "seed": dict(generator_channels=[1024, 384, 256, 128, 64], discriminator_channels=[64, 128, 256, 384, 1024],
                 upsample="transposed", discriminator_norm="batch", spectral_norm=False, loss="bce",
                 real_label_smoothing=0.1, instance_noise=0.1, diffaugment="", learning_rate_generator=4e-4,
                 learning_rate_discriminator=4e-5, adam_beta1=0.5, train_batch_size=64, ema_decay=0.0),
}


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


def main(config: TrainConfig) -> None:
    if not config.dataset:
        raise SystemExit("error: --dataset is required")
    if config.loss not in ("hinge", "bce"):
        raise SystemExit(f"error: --loss must be hinge or bce, got {config.loss!r}")
    if config.mixed_precision not in MIXED_PRECISIONS:
        raise SystemExit(f"error: --mixed_precision must be one of {', '.join(MIXED_PRECISIONS)}, "
                         f"got {config.mixed_precision!r}")
    if config.budget_clock not in ("wall", "cpu"):
        raise SystemExit(f"error: --budget_clock must be wall or cpu, got {config.budget_clock!r}")
    try:
        snapshot_minutes = sorted(float(m) for m in config.snapshot_minutes.split(",") if m.strip())
    except ValueError:
        raise SystemExit(f"error: --snapshot_minutes must be comma-separated numbers, got {config.snapshot_minutes!r}")
    if config.image_size not in DEFAULT_DISCRIMINATOR_LAYERS:
        raise SystemExit(f"error: --image_size must be one of {sorted(DEFAULT_DISCRIMINATOR_LAYERS)}")
    strides = [s for _, s in DEFAULT_DISCRIMINATOR_LAYERS[config.image_size]]
    if len(config.discriminator_channels) != len(strides):
        raise SystemExit(f"error: --discriminator_channels needs {len(strides)} widths at image_size {config.image_size}")
    output_dir = Path(config.output_dir)
    accelerator = Accelerator(
        cpu=distributed_on_cpu(),  # several CPU processes over gloo when there is no GPU
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=training_precision(config.mixed_precision),
        log_with=None if config.report_to == "none" else config.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed),
    )
    # the "auto" speed settings as resolved for this machine, so the saved config says what ran
    config.mixed_precision = accelerator.mixed_precision
    config.channels_last = channels_last_default(config.channels_last, config.mixed_precision, accelerator.device)
    set_seed(config.seed, device_specific=True)  # different latents per process
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, output_dir)

    # Data: scenes -> (B, 3, S, S) in [-1, 1] and integer labels. The main process converts/caches first.
    with accelerator.main_process_first():
        dataset = load_scene_dataset(config.dataset, split="train", image_column=config.image_column,
                                     label_column=config.label_column)
    if config.conditional and "label" not in dataset.column_names:
        raise SystemExit(f"error: --conditional needs labels, but {config.dataset} has none")
    class_names = dataset.features["label"].names if config.conditional else None
    dataset = dataset.select_columns(["image", "label"] if config.conditional else ["image"])
    dataset = dataset.with_transform(SceneTransform(config.image_size, flip=config.flip, dihedral=config.dihedral))
    train_dataloader = DataLoader(dataset, batch_size=config.train_batch_size, shuffle=True, drop_last=True,
                                  num_workers=config.dataloader_num_workers,
                                  persistent_workers=config.dataloader_num_workers > 0)

    # Models, EMA and optimizers.
    num_classes = len(class_names) if class_names else 0
    generator = DCGANGenerator(image_size=config.image_size, latent_dim=config.latent_dim,
                               channels=config.generator_channels, upsample=config.upsample,
                               kernel_size=config.kernel_size,
                               num_classes=num_classes, class_names=class_names)
    discriminator = DCGANDiscriminator(image_size=config.image_size,
                                       layers=[[c, s] for c, s in zip(config.discriminator_channels, strides)],
                                       kernel_size=config.kernel_size, norm=config.discriminator_norm,
                                       spectral_norm=config.spectral_norm,
                                       num_classes=num_classes, class_names=class_names)
    if config.sync_batchnorm and accelerator.num_processes > 1:
        if accelerator.device.type == "cpu":
            raise SystemExit("error: --sync_batchnorm needs GPUs (torch's SyncBatchNorm has no CPU kernel)")
        generator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(generator)
        discriminator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(discriminator)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    generator.to(memory_format=memory_format)
    discriminator.to(memory_format=memory_format)
    ema = EMAModel(generator.parameters(), decay=config.ema_decay, use_ema_warmup=True) if config.ema_decay else None
    betas = (config.adam_beta1, config.adam_beta2)  # fused=True: one kernel over all weights, ~3.5x faster on CPU
    optimizer_g = torch.optim.Adam(generator.parameters(), config.learning_rate_generator, betas=betas, fused=True)
    optimizer_d = torch.optim.Adam(discriminator.parameters(), config.learning_rate_discriminator, betas=betas,
                                   fused=True)

    generator, discriminator, optimizer_g, optimizer_d, train_dataloader = accelerator.prepare(
        generator, discriminator, optimizer_g, optimizer_d, train_dataloader)
    if ema is not None:
        accelerator.register_for_checkpointing(ema)
    steps_per_epoch = len(train_dataloader) // config.gradient_accumulation_steps
    if steps_per_epoch == 0:
        raise SystemExit(f"error: {len(dataset)} images are fewer than one batch per process")
    max_train_steps = config.max_train_steps or config.num_epochs * steps_per_epoch
    num_epochs = math.ceil(max_train_steps / steps_per_epoch)

    # Resume: models, optimizers, EMA, dataloader sampler and every process's RNG; the step is in the name.
    checkpoint, global_step = find_checkpoint(output_dir, config.resume_from_checkpoint)
    if checkpoint is not None:
        accelerator.print(f"resuming from {checkpoint} (step {global_step})")
        accelerator.load_state(str(checkpoint))
    clock = TrainingClock(load_training_state(checkpoint).get("train_seconds", 0.0))  # for the model card
    first_epoch = global_step // steps_per_epoch
    skip_batches = (global_step % steps_per_epoch) * config.gradient_accumulation_steps
    if accelerator.is_main_process:
        tracker_config = {k: str(v) if isinstance(v, (list, type(None))) else v
                          for k, v in dataclasses.asdict(config).items()}
        accelerator.init_trackers("dcgan", config=tracker_config)
        loss_log = LossLog(output_dir, resume_step=global_step)
        (output_dir / "samples").mkdir(exist_ok=True)
    device = accelerator.device
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
        trained = accelerator.unwrap_model(generator)
        model = DCGANGenerator(**trained._hub_mixin_config).to(device)
        model.load_state_dict(trained.state_dict())  # SyncBatchNorm has the same keys as BatchNorm
        if ema is not None:
            ema.copy_to(model.parameters())
        recalibrate_batchnorm(model)
        return model

    def out_of_time(main_says: bool) -> bool:
        """The main process's clock decides for every process, so they all stop at the same step."""
        flag_tensor = torch.tensor([float(main_says)], device=device)
        return bool(broadcast(flag_tensor, from_process=0).item()) if accelerator.num_processes > 1 else main_says

    def sample_grid(model: DCGANGenerator, path: Path) -> None:
        """Fixed latents (and classes, cycling) through the generator in eval mode."""
        with torch.no_grad(), accelerator.autocast():
            images = model(sample_z, sample_labels)
        save_grid(images.float(), path, columns=8)

    # Train!
    total_batch = config.train_batch_size * accelerator.num_processes * config.gradient_accumulation_steps
    accelerator.print(f"{len(dataset)} images, {num_classes or 'no'} classes, {accelerator.num_processes} "
                      f"process(es), {total_batch} images per step, {max_train_steps} steps, "
                      f"precision {accelerator.mixed_precision}")
    progress = tqdm(total=max_train_steps, initial=global_step, desc="dcgan", disable=not accelerator.is_main_process)
    start_step = global_step
    for epoch in range(first_epoch, num_epochs):
        train_dataloader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(train_dataloader, skip_batches) if epoch == first_epoch \
            else train_dataloader
        for batch in batches:
            if global_step >= max_train_steps:  # also when resuming a finished run: just save
                break
            real = batch["image"].to(memory_format=memory_format)  # (B, 3, S, S)
            labels = batch["label"] if num_classes else None  # (B,) or None
            z = torch.randn(real.shape[0], config.latent_dim, device=device)
            with accelerator.accumulate(generator, discriminator):
                # (1) Update D: push D(x) up and D(G(z)) down
                fake = generator(z, labels)  # (B, 3, S, S)
                real_logits = discriminator(d_input(real), labels)
                fake_logits = discriminator(d_input(fake.detach()), labels)
                if config.loss == "hinge":
                    loss_d = hinge_discriminator_loss(real_logits, fake_logits)
                else:
                    loss_d = bce_discriminator_loss(real_logits, fake_logits, (1 - config.real_label_smoothing, 1))
                accelerator.backward(loss_d)
                optimizer_d.step()
                optimizer_d.zero_grad()

                # (2) Update G: make D call G(z) real. D is frozen so no gradient lands in it.
                discriminator.requires_grad_(False)
                fake_logits = discriminator(d_input(fake), labels)
                loss_g = hinge_generator_loss(fake_logits) if config.loss == "hinge" else bce_generator_loss(fake_logits)
                accelerator.backward(loss_g)
                optimizer_g.step()
                optimizer_g.zero_grad()
                discriminator.requires_grad_(True)

            if not accelerator.sync_gradients:
                continue
            if ema is not None:
                ema.step(accelerator.unwrap_model(generator).parameters())
            global_step += 1
            progress.update(1)
            if global_step % config.logging_steps == 0 or global_step == max_train_steps:
                losses = accelerator.reduce(torch.stack([loss_d.detach(), loss_g.detach()]), reduction="mean")
                logs = {"loss_d": losses[0].item(), "loss_g": losses[1].item(),
                        "real_logit": real_logits.detach().float().mean().item(),
                        "fake_logit": fake_logits.detach().float().mean().item()}
                progress.set_postfix(loss_d=f"{logs['loss_d']:.3f}", loss_g=f"{logs['loss_g']:.3f}")
                accelerator.log(logs, step=global_step)
                if accelerator.is_main_process:
                    loss_log.append(global_step, logs)
            if global_step % config.checkpointing_steps == 0:
                save_checkpoint(accelerator, output_dir, global_step, config.checkpoints_total_limit,
                                extra={"train_seconds": clock.total()})
            if accelerator.is_main_process and global_step % config.sample_every == 0:
                sample_grid(release_generator(), output_dir / "samples" / f"step_{global_step:07d}.png")
            minutes = clock.session_minutes(config.budget_clock)
            while accelerator.is_main_process and snapshot_minutes and minutes >= snapshot_minutes[0]:
                release_generator().save_pretrained(output_dir / f"snapshot-{snapshot_minutes.pop(0):g}min")
            if config.max_train_minutes is not None and out_of_time(minutes >= config.max_train_minutes):
                max_train_steps = global_step
                break
        skip_batches = 0
        if global_step >= max_train_steps:
            break
    progress.close()

    # Save: the (EMA) generator with recalibrated batch norm, its samples and loss curves, and a model card.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final = release_generator()
        sample_grid(final, output_dir / "samples.png")
        loss_log.plot(output_dir / "loss_curves.png", title=f"DCGAN ({config.preset} recipe)")
        metrics = {}
        if config.eval_split:
            metrics = evaluate(final, config)
        training = training_markdown(config, global_step, global_step * total_batch, global_step - start_step,
                                     clock.session(), f"{accelerator.num_processes} process(es) on "
                                     f"{accelerator.device.type}", total_seconds=clock.total())
        if config.save_fp16:
            final.half()  # safetensors keeps fp16; from_pretrained copies into fp32 parameters
        card = {"training": training, "metrics": metrics, "dataset": config.dataset,
                "dataset_split": config.eval_split, "sample_image": "samples.png", "repo_id": config.hub_model_id}
        final.save_pretrained(output_dir, model_card_kwargs=card)
        if config.push_to_hub:
            final.push_to_hub(config.hub_model_id or output_dir.name, model_card_kwargs=card)
        print(f"saved the generator to {output_dir} ({global_step} steps, world size {accelerator.num_processes})")
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
