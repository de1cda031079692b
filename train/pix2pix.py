"""Train pix2pix (Isola et al. 2017) for satellite -> map or map -> satellite translation under
`accelerate launch`:

    accelerate launch train/pix2pix.py --dataset ../shared/data/mumbai_train --direction sat2map
    accelerate launch --multi_gpu --num_processes 2 train/pix2pix.py ...  # 2 CPU processes (gloo)

The recipe is the paper's (`--preset seed`): resize to 286, the same random 256 crop and flip on
both images, batch 1, Adam 2e-4 with beta1 0.5, GAN loss + 100 x L1, D's loss halved, learning rate
constant for the first half of training then linearly to 0. The default adds a generator EMA.
Normalisation is instance norm (no batch statistics), so nothing is synchronised across processes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from rsgan_hub.data import PairedTransform, load_pair_dataset
from rsgan_hub.hardware import MIXED_PRECISIONS, channels_last_default, training_precision
from rsgan_hub.losses import (bce_discriminator_loss, bce_generator_loss, hinge_discriminator_loss,
                              hinge_generator_loss, l1_loss)
from rsgan_hub.models import PatchDiscriminator, Pix2PixGenerator
from rsgan_hub.training import (LossLog, TrainingClock, distributed_on_cpu, find_checkpoint, flag,
                                load_training_state, parse_config, save_checkpoint, save_config, save_grid,
                                training_markdown)


@dataclass
class TrainConfig:
    """Train pix2pix on satellite/map pairs with accelerate."""

    preset: str = flag("default", "recipe whose values become the defaults: 'default' or 'seed' (the paper's)")
    dataset: str = flag("", "Hub dataset id, `rsgan dataset` folder, or a folder of side-by-side pair JPEGs")
    satellite_column: str = flag("satellite", "satellite image column of the dataset")
    map_column: str = flag("map", "map image column of the dataset")
    direction: str = flag("sat2map", "'sat2map' or 'map2sat'")
    validation_split: str = flag(None, "split the fixed sample pairs come from (none: the first training pairs)")
    eval_split: str = flag(None, "split to evaluate the final generator on, e.g. 'test' (none: skip)")
    dataset_name: str = flag(None, "how the model card names the data (default: the --dataset value)")
    output_dir: str = flag("outputs/pix2pix", "checkpoints, samples, logs and the final model")
    seed: int = flag(0, "seed of the run (each process adds its rank)")
    # data and model
    load_size: int = flag(286, "resize both images to this side ...")
    crop_size: int = flag(256, "... then take the same random crop of this side")
    flip: bool = flag(True, "random horizontal flip (the same for both images)")
    base_channels: int = flag(64, "generator width of the first U-Net block")
    num_downs: int = flag(8, "U-Net depth (8: 256 px down to 1x1)")
    dropout: float = flag(0.5, "dropout in the three innermost decoder blocks")
    discriminator_channels: int = flag(64, "PatchGAN width of the first convolution")
    discriminator_layers: int = flag(3, "PatchGAN stride-2 layers (3: 70x70 patches)")
    # objective and optimisation
    loss: str = flag("bce", "'bce' (the paper's) or 'hinge'")
    lambda_l1: float = flag(100.0, "weight of the L1 term in G's loss")
    learning_rate: float = flag(2e-4, "Adam learning rate (both networks)")
    adam_beta1: float = flag(0.5, "Adam beta1")
    adam_beta2: float = flag(0.999, "Adam beta2")
    decay_start: float = flag(0.5, "fraction of training after which the learning rate decays linearly to 0")
    train_batch_size: int = flag(1, "pairs per process per micro-step")
    gradient_accumulation_steps: int = flag(1, "micro-steps per optimizer step")
    max_train_steps: int = flag(None, "optimizer steps (none: --num_epochs epochs)")
    num_epochs: int = flag(200, "epochs when --max_train_steps is none")
    ema_decay: float = flag(0.999, "generator EMA decay, warmed up from 0 (0: no EMA)")
    # speed
    mixed_precision: str = flag("auto", "'auto' (bf16 where the CPU/GPU has it natively, else fp32), 'no', 'bf16' or 'fp16'")
    channels_last: bool = flag(None, "channels_last memory format (none: on under bf16/fp16 or on a GPU, off in fp32 on a CPU)")
    dataloader_num_workers: int = flag(1, "DataLoader worker processes per training process")
    # bookkeeping
    checkpointing_steps: int = flag(500, "save a resumable checkpoint every N steps")
    checkpoints_total_limit: int = flag(2, "keep at most N checkpoints (0: all)")
    resume_from_checkpoint: str = flag(None, "'latest' or a checkpoint-<step> folder")
    sample_every: int = flag(250, "write a sample grid (fixed validation pairs) every N steps")
    num_samples: int = flag(4, "validation pairs in each sample grid")
    card_samples: bool = flag(True, "show the last sample grid (of your data) in the model card")
    logging_steps: int = flag(10, "log losses every N steps")
    report_to: str = flag("tensorboard", "'tensorboard', 'trackio' or 'none'")
    save_fp16: bool = flag(False, "store the released weights in fp16 (half the size; loading casts to fp32)")
    push_to_hub: bool = flag(False, "push the final generator with `push_to_hub`")
    hub_model_id: str = flag(None, "repo id for --push_to_hub (default: output_dir's name)")


PRESETS = {
    "default": {},
    # Isola et al. 2017 exactly: no EMA.
    "seed": dict(load_size=286, crop_size=256, flip=True, base_channels=64, loss="bce", lambda_l1=100.0,
                 learning_rate=2e-4, adam_beta1=0.5, train_batch_size=1, decay_start=0.5, ema_decay=0.0),
}


def main(config: TrainConfig) -> None:
    if not config.dataset:
        raise SystemExit("error: --dataset is required")
    if config.direction not in ("sat2map", "map2sat"):
        raise SystemExit(f"error: --direction must be sat2map or map2sat, got {config.direction!r}")
    if config.loss not in ("hinge", "bce"):
        raise SystemExit(f"error: --loss must be hinge or bce, got {config.loss!r}")
    if config.mixed_precision not in MIXED_PRECISIONS:
        raise SystemExit(f"error: --mixed_precision must be one of {', '.join(MIXED_PRECISIONS)}, "
                         f"got {config.mixed_precision!r}")
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
    set_seed(config.seed, device_specific=True)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, output_dir)

    # Data: (source, target) pairs in [-1, 1] with the same crop and flip; fixed, un-augmented sample pairs.
    source_column, target_column = ("satellite", "map") if config.direction == "sat2map" else ("map", "satellite")
    with accelerator.main_process_first():
        dataset = load_pair_dataset(config.dataset, split="train", satellite_column=config.satellite_column,
                                    map_column=config.map_column)
        validation = dataset if config.validation_split is None else load_pair_dataset(
            config.dataset, split=config.validation_split, satellite_column=config.satellite_column,
            map_column=config.map_column)
    dataset = dataset.select_columns(["satellite", "map"])
    validation = validation.select_columns(["satellite", "map"]).select(range(min(config.num_samples, len(validation))))
    fixed = validation.with_transform(PairedTransform(config.crop_size, config.crop_size, flip=False, random_crop=False))
    sample_source = torch.stack([fixed[i][source_column] for i in range(len(fixed))])  # (N, 3, crop, crop)
    sample_target = torch.stack([fixed[i][target_column] for i in range(len(fixed))])
    dataset = dataset.with_transform(PairedTransform(config.load_size, config.crop_size, flip=config.flip))
    train_dataloader = DataLoader(dataset, batch_size=config.train_batch_size, shuffle=True, drop_last=True,
                                  num_workers=config.dataloader_num_workers,
                                  persistent_workers=config.dataloader_num_workers > 0)

    # Models, EMA, optimizers and the constant-then-linear learning-rate schedules.
    generator = Pix2PixGenerator(base_channels=config.base_channels, num_downs=config.num_downs,
                                 dropout=config.dropout, direction=config.direction)
    discriminator = PatchDiscriminator(base_channels=config.discriminator_channels,
                                       num_layers=config.discriminator_layers)
    # channels_last applies to the images (and so to every activation); the weights stay contiguous:
    # fused Adam copies non-contiguous (channels_last) weights on every step - measured 25 % of a
    # batch-1 step on a 2-core CPU.
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    ema = EMAModel(generator.parameters(), decay=config.ema_decay, use_ema_warmup=True) if config.ema_decay else None
    betas = (config.adam_beta1, config.adam_beta2)  # fused=True: one kernel over all weights, ~3.5x faster on CPU
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=config.learning_rate, betas=betas, fused=True)
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=config.learning_rate, betas=betas, fused=True)

    generator, discriminator, optimizer_g, optimizer_d, train_dataloader = accelerator.prepare(
        generator, discriminator, optimizer_g, optimizer_d, train_dataloader)
    steps_per_epoch = len(train_dataloader) // config.gradient_accumulation_steps
    if steps_per_epoch == 0:
        raise SystemExit(f"error: {len(dataset)} pairs are fewer than one batch per process")
    max_train_steps = config.max_train_steps or config.num_epochs * steps_per_epoch
    num_epochs = math.ceil(max_train_steps / steps_per_epoch)
    constant_steps = int(max_train_steps * config.decay_start)
    schedulers = [torch.optim.lr_scheduler.SequentialLR(optimizer, milestones=[constant_steps], schedulers=[
        torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=constant_steps),
        torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, 0.0, total_iters=max(1, max_train_steps - constant_steps))])
        for optimizer in (optimizer_g.optimizer, optimizer_d.optimizer)]  # stepped once per optimizer step
    for obj in [*schedulers, *([ema] if ema is not None else [])]:
        accelerator.register_for_checkpointing(obj)

    # Resume: models, optimizers, schedulers, EMA, sampler and every process's RNG; the step is in the name.
    checkpoint, global_step = find_checkpoint(output_dir, config.resume_from_checkpoint)
    if checkpoint is not None:
        accelerator.print(f"resuming from {checkpoint} (step {global_step})")
        accelerator.load_state(str(checkpoint))
    clock = TrainingClock(load_training_state(checkpoint).get("train_seconds", 0.0))  # for the model card
    first_epoch = global_step // steps_per_epoch
    skip_batches = (global_step % steps_per_epoch) * config.gradient_accumulation_steps
    if accelerator.is_main_process:
        tracker_config = {k: str(v) if v is None else v for k, v in dataclasses.asdict(config).items()}
        accelerator.init_trackers("pix2pix", config=tracker_config)
        loss_log = LossLog(output_dir, resume_step=global_step)
        (output_dir / "samples").mkdir(exist_ok=True)
    device = accelerator.device

    def release_generator() -> Pix2PixGenerator:
        """A plain fp32 copy of the generator with the EMA weights, in eval mode."""
        trained = accelerator.unwrap_model(generator)
        model = Pix2PixGenerator(**trained._hub_mixin_config).to(device)
        model.load_state_dict(trained.state_dict())
        if ema is not None:
            ema.copy_to(model.parameters())
        return model.eval()

    def sample_grid(model: Pix2PixGenerator, path: Path) -> None:
        """One row per fixed pair: source | generated | target (eval mode, as after loading)."""
        with torch.no_grad(), accelerator.autocast():
            fake = model(sample_source.to(device)).float().cpu()
        rows = torch.stack([sample_source, fake, sample_target], dim=1).flatten(0, 1)  # (3N, 3, H, W)
        save_grid(rows, path, columns=3)

    # Train!
    total_batch = config.train_batch_size * accelerator.num_processes * config.gradient_accumulation_steps
    accelerator.print(f"{len(dataset)} pairs, {config.direction}, {accelerator.num_processes} process(es), "
                      f"{total_batch} pairs per step, {max_train_steps} steps, precision {accelerator.mixed_precision}")
    progress = tqdm(total=max_train_steps, initial=global_step, desc=config.direction,
                    disable=not accelerator.is_main_process)
    start_step = global_step
    for epoch in range(first_epoch, num_epochs):
        train_dataloader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(train_dataloader, skip_batches) if epoch == first_epoch \
            else train_dataloader
        for batch in batches:
            if global_step >= max_train_steps:  # also when resuming a finished run: just save
                break
            source = batch[source_column].to(memory_format=memory_format)  # (B, 3, crop, crop)
            target = batch[target_column].to(memory_format=memory_format)
            with accelerator.accumulate(generator, discriminator):
                # (1) Update D: (source, target) is real, (source, G(source)) is fake
                fake = generator(source)
                # Real and fake pairs in one call: D normalises each image on its own (instance norm),
                # so this is two calls' result at one call's cost in weight traffic.
                logits = discriminator(torch.cat([torch.cat([source, target], dim=1),
                                                  torch.cat([source, fake.detach()], dim=1)]))
                real_logits, fake_logits = logits.chunk(2)  # (B, 1, h, w) patch logits each
                if config.loss == "hinge":
                    loss_d = 0.5 * hinge_discriminator_loss(real_logits, fake_logits)
                else:
                    loss_d = 0.5 * bce_discriminator_loss(real_logits, fake_logits)  # halved, as in the paper
                accelerator.backward(loss_d)
                optimizer_d.step()
                optimizer_d.zero_grad()

                # (2) Update G: fool D and stay close to the target in L1. D is frozen.
                discriminator.requires_grad_(False)
                fake_logits = discriminator(torch.cat([source, fake], dim=1))
                loss_g_gan = hinge_generator_loss(fake_logits) if config.loss == "hinge" else bce_generator_loss(fake_logits)
                loss_l1 = l1_loss(fake, target)
                loss_g = loss_g_gan + config.lambda_l1 * loss_l1
                accelerator.backward(loss_g)
                optimizer_g.step()
                optimizer_g.zero_grad()
                discriminator.requires_grad_(True)

            if not accelerator.sync_gradients:
                continue
            for scheduler in schedulers:
                scheduler.step()
            if ema is not None:
                ema.step(accelerator.unwrap_model(generator).parameters())
            global_step += 1
            progress.update(1)
            if global_step % config.logging_steps == 0 or global_step == max_train_steps:
                losses = accelerator.reduce(torch.stack([loss_d.detach(), loss_g_gan.detach(), loss_l1.detach()]),
                                            reduction="mean")
                logs = {"loss_d": losses[0].item(), "loss_g_gan": losses[1].item(), "loss_l1": losses[2].item(),
                        "lr": schedulers[0].get_last_lr()[0]}
                progress.set_postfix(loss_d=f"{logs['loss_d']:.3f}", l1=f"{logs['loss_l1']:.3f}")
                accelerator.log(logs, step=global_step)
                if accelerator.is_main_process:
                    loss_log.append(global_step, logs)
            if global_step % config.checkpointing_steps == 0:
                save_checkpoint(accelerator, output_dir, global_step, config.checkpoints_total_limit,
                                extra={"train_seconds": clock.total()})
            if accelerator.is_main_process and global_step % config.sample_every == 0:
                sample_grid(release_generator(), output_dir / "samples" / f"step_{global_step:07d}.png")
        skip_batches = 0
        if global_step >= max_train_steps:
            break
    progress.close()

    # Save: the (EMA) generator, its samples and loss curves, and a model card.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final = release_generator().to(memory_format=torch.contiguous_format).float()
        sample_grid(final, output_dir / "samples.png")
        loss_log.plot(output_dir / "loss_curves.png", title=f"pix2pix {config.direction} ({config.preset} recipe)")
        metrics = {}
        if config.eval_split:
            metrics = evaluate(final, config)
        training = training_markdown(config, global_step, global_step * total_batch, global_step - start_step,
                                     clock.session(), f"{accelerator.num_processes} process(es) on "
                                     f"{accelerator.device.type}", total_seconds=clock.total())
        card = {"training": training, "metrics": metrics, "dataset": config.dataset,
                "dataset_split": config.eval_split, "repo_id": config.hub_model_id}
        if config.card_samples:
            card["sample_image"] = "samples.png"
        if config.save_fp16:
            final.half()  # safetensors keeps fp16; from_pretrained copies into fp32 parameters
        final.save_pretrained(output_dir, model_card_kwargs=card)
        if config.push_to_hub:
            final.push_to_hub(config.hub_model_id or output_dir.name, model_card_kwargs=card)
        print(f"saved the generator to {output_dir} ({global_step} steps, world size {accelerator.num_processes})")
    accelerator.end_training()


def evaluate(generator: Pix2PixGenerator, config: TrainConfig) -> dict:
    """The model's metrics on `config.eval_split` (rsgan_hub.evaluation), printed beside the baseline."""
    from rsgan_hub.evaluation import card_metrics, evaluate_translator, format_table

    dataset = load_pair_dataset(config.dataset, split=config.eval_split, satellite_column=config.satellite_column,
                                map_column=config.map_column)
    results = evaluate_translator(generator, dataset, split=config.eval_split)
    print(format_table(results, title=f"evaluation on the {config.eval_split} split"))
    return card_metrics(results)  # the card's table: the model's own numbers


if __name__ == "__main__":
    main(parse_config(TrainConfig, PRESETS))
