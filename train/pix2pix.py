"""Train pix2pix (Isola et al. 2017) for satellite -> map or map -> satellite translation under
`accelerate launch`:

    accelerate launch train/pix2pix.py --dataset ../shared/data/mumbai_train --direction sat2map
    accelerate launch --multi_gpu --num_processes 2 train/pix2pix.py ...  # 2 CPU processes (gloo)

The recipe is the paper's (`--preset seed`): resize to 286, the same random 256 crop and flip on
both images, batch 1, Adam 2e-4 with beta1 0.5, GAN loss + 100 x L1, D's loss halved, learning rate
constant for the first half of training then linearly to 0. The default adds a generator EMA.
Normalisation is instance norm (no batch statistics), so nothing is synchronised across processes.

`--legend` (satellite -> map): the U-Net predicts the map legend's classes
(`rsgan_hub.evaluation.LEGEND_PALETTE`) with a class-weighted cross-entropy instead of regressing RGB
with L1, which on a near-white map style finds the background everywhere. Text and icons are left
out of the loss (no translator can know them); `--lambda_dice` adds a soft Dice term, which counts a
thin class as much as a wide one. The PatchGAN sees maps drawn in the palette: the
generator's class probabilities rendered, against the real map's classes rendered.

`--lambda_ssim` (RGB output) adds 1 - SSIM to the L1 term (Zhao et al. 2017), the SSIM `rsgan evaluate`
reports; `--lambda_gan` below 1 moves weight from texture to the pixel scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader

import torch.nn.functional as F

from rsgan_hub.data import PairedTransform, load_pair_dataset
from rsgan_hub.evaluation.classify import to_uint8
from rsgan_hub.evaluation.translation import (BACKGROUND, IGNORED, LEGEND_OUTLINES, LEGEND_PALETTE, PREDICTED_CLASSES,
                                              describe_class_weights, legend_class_weights, legend_classes)
from rsgan_hub.losses import (bce_discriminator_loss, bce_generator_loss, hinge_discriminator_loss,
                              hinge_generator_loss, l1_loss, soft_dice_loss, ssim_loss)
from rsgan_hub.models import PatchDiscriminator, Pix2PixGenerator
from rsgan_hub.models.fast import training_layers
from rsgan_hub.models.pix2pix import UPSAMPLE_MODES
from rsgan_hub.training import (RunFlags, TrainingRun, adopt_release_flags, check_common_flags, flag, freeze_blocks,
                                load_release, parse_config, plain_copy, resolve_resume, save_grid)


@dataclass
class TrainConfig(RunFlags):
    """Train pix2pix on satellite/map pairs with accelerate."""

    preset: str = flag("default", "recipe whose values become the defaults: 'default' or 'seed' (the paper's)")
    dataset: str = flag("", "Hub dataset id, `rsgan dataset` folder, or a folder of side-by-side pair JPEGs")
    satellite_column: str = flag("satellite", "satellite image column of the dataset")
    map_column: str = flag("map", "map image column of the dataset")
    direction: str = flag("sat2map", "translation direction", choices=["sat2map", "map2sat"])
    validation_split: str = flag(None, "split the fixed sample pairs come from (none: the first training pairs)")
    output_dir: str = flag("outputs/pix2pix", "checkpoints, samples, logs and the release (generator + discriminator/)")
    # data and model
    load_size: int = flag(286, "resize both images to this side ...", minimum=1)
    crop_size: int = flag(256, "... then take the same random crop of this side", minimum=1)
    flip: bool = flag(True, "random horizontal flip (the same for both images)")
    dihedral: bool = flag(False, "random rotation by 90-degree steps and flip (one of the 8 symmetries of the square, "
                                 "the same for both images)")
    base_channels: int = flag(64, "generator width of the first U-Net block", minimum=1)
    num_downs: int = flag(8, "U-Net depth (8: 256 px down to 1x1)", minimum=5)
    dropout: float = flag(0.5, "dropout in the three innermost decoder blocks", minimum=0)
    upsample: str = flag("transposed", "decoder upsampling: 4x4 stride-2 transposed convs (the paper's) or nearest "
                         "resize + 3x3 conv (no checkerboard)", choices=list(UPSAMPLE_MODES))
    discriminator_channels: int = flag(64, "PatchGAN width of the first convolution", minimum=1)
    discriminator_layers: int = flag(3, "PatchGAN stride-2 layers (3: 70x70 patches)", minimum=1)
    legend: bool = flag(False, "sat2map: predict the map legend's classes (cross-entropy) instead of RGB (L1)")
    # objective and optimisation
    loss: str = flag("bce", "bce (the paper's) or hinge", choices=["bce", "hinge"])
    lambda_l1: float = flag(100.0, "weight of the L1 term in G's loss (RGB output)", minimum=0)
    lambda_ssim: float = flag(0.0, "weight of a 1 - SSIM term in G's loss (RGB output; the SSIM `rsgan evaluate` "
                                   "reports, rewarding local structure where L1 rewards the median)", minimum=0)
    lambda_ce: float = flag(10.0, "weight of the cross-entropy term in G's loss (--legend)", minimum=0)
    lambda_dice: float = flag(0.0, "weight of a soft Dice term on the class probabilities in G's loss (--legend; "
                                   "each present class counts equally, thin roads as much as background)", minimum=0)
    lambda_gan: float = flag(1.0, "weight of the adversarial term in G's loss (0: no discriminator is trained)",
                             minimum=0)
    class_weighting: str = flag("sqrt", "--legend class weights: 1/sqrt(pixel share), at most 10x the commonest "
                                        "class's ('sqrt'), or 'none'", choices=["sqrt", "none"])
    logit_adjustment: float = flag(0.0, "--legend with class weights: the released model's class logits shifted by "
                                        "-A x log(class weight) (0: none; 1: the weighting's push towards rare classes "
                                        "taken back; negative: pushed further, which can raise their IoU)")
    learning_rate: float = flag(2e-4, "Adam learning rate (both networks)", minimum=0)
    adam_beta1: float = flag(0.5, "Adam beta1", minimum=0)
    adam_beta2: float = flag(0.999, "Adam beta2", minimum=0)
    decay_start: float = flag(0.5, "fraction of training after which the learning rate decays linearly to 0",
                              minimum=0)
    train_batch_size: int = flag(1, "pairs per process per micro-step", minimum=1)
    num_epochs: int = flag(200, "epochs when --max_train_steps is none", minimum=1)
    # bookkeeping
    sample_every: int = flag(250, "write a sample grid (fixed validation pairs) every N steps", minimum=1)
    num_samples: int = flag(4, "validation pairs in each sample grid", minimum=1)
    card_samples: bool = flag(True, "show the last sample grid (of your data) in the model card")


PRESETS = {
    "default": {},
    # Isola et al. 2017 exactly: no EMA.
    "seed": dict(load_size=286, crop_size=256, flip=True, base_channels=64, loss="bce", lambda_l1=100.0,
                 learning_rate=2e-4, adam_beta1=0.5, train_batch_size=1, decay_start=0.5, ema_decay=0.0),
}


def release_flags(generator: Pix2PixGenerator, discriminator: PatchDiscriminator | None) -> dict:
    """The network flags a release fixes (the discriminator's only when it has one)."""
    g = generator.init_config
    flags = dict(base_channels=g["base_channels"], num_downs=g["num_downs"], dropout=g["dropout"],
                 upsample=g["upsample"], legend=generator.predicts_classes)
    if discriminator is not None:
        d = discriminator.init_config
        flags.update(discriminator_channels=d["base_channels"], discriminator_layers=d["num_layers"])
    return flags


def main(config: TrainConfig) -> None:
    # Flags: every check before anything is read or written; --init_from fixes the network flags.
    check_common_flags(config)
    if config.crop_size > config.load_size:
        raise SystemExit(f"error: --crop_size {config.crop_size} is larger than --load_size {config.load_size}")
    if config.legend and config.direction != "sat2map":
        raise SystemExit("error: --legend predicts map classes: it needs --direction sat2map")
    released_g = released_d = None
    if config.init_from:
        released_g, released_d = load_release(config.init_from, Pix2PixGenerator, PatchDiscriminator,
                                              config.fresh_discriminator, config.freeze_discriminator_layers)
        released = released_g.direction
        if released and released != config.direction and "direction" not in config.explicit_flags:
            raise SystemExit(f"error: --init_from {config.init_from} translates {released}, not {config.direction}: "
                             f"pass --direction {released} to fine-tune it, or --direction {config.direction} to "
                             "retrain it the other way")
        adopt_release_flags(config, release_flags(released_g, released_d), config.init_from)
    if config.lambda_dice and not config.legend:
        raise SystemExit("error: --lambda_dice weighs a loss on the legend classes: it needs --legend "
                         "(or an --init_from legend release)")
    if config.lambda_ssim and config.legend:
        raise SystemExit("error: --lambda_ssim weighs a loss on RGB output: a --legend model predicts classes")
    if config.logit_adjustment and not (config.legend and config.class_weighting == "sqrt"):
        raise SystemExit("error: --logit_adjustment takes back the legend's class weights: it needs --legend "
                         "and --class_weighting sqrt")
    checkpoint, global_step = resolve_resume(config.output_dir, config.resume_from_checkpoint)
    run = TrainingRun(config, "pix2pix")
    accelerator, output_dir, device = run.accelerator, run.output_dir, run.device

    # Data: (source, target) pairs in [-1, 1] with the same crop and flip; fixed, un-augmented sample pairs.
    source_column, target_column = ("satellite", "map") if config.direction == "sat2map" else ("map", "satellite")
    with accelerator.main_process_first():
        dataset = load_pair_dataset(config.dataset, split="train", satellite_column=config.satellite_column,
                                    map_column=config.map_column)
        validation = dataset if config.validation_split is None else load_pair_dataset(
            config.dataset, split=config.validation_split, satellite_column=config.satellite_column,
            map_column=config.map_column)
    run.check_data(len(dataset), "pairs")
    class_weights = None
    if config.legend and config.class_weighting == "sqrt":
        class_weights, share = legend_class_weights(dataset, config.map_column)
        print("legend class weights: " + describe_class_weights(class_weights, share))
    dataset = dataset.select_columns(["satellite", "map"])
    validation = validation.select_columns(["satellite", "map"]).select(range(min(config.num_samples, len(validation))))
    fixed = validation.with_transform(PairedTransform(config.crop_size, config.crop_size, flip=False, random_crop=False))
    sample_source = torch.stack([fixed[i][source_column] for i in range(len(fixed))])  # (N, 3, crop, crop)
    sample_target = torch.stack([fixed[i][target_column] for i in range(len(fixed))])
    dataset = dataset.with_transform(PairedTransform(config.load_size, config.crop_size, flip=config.flip,
                                                        dihedral=config.dihedral))
    train_dataloader = DataLoader(dataset, batch_size=config.train_batch_size, shuffle=True, drop_last=True,
                                  num_workers=config.dataloader_num_workers,
                                  persistent_workers=config.dataloader_num_workers > 0)

    # Models (the release's, or new ones from the flags), EMA (from the released generator), fresh
    # optimizers and the constant-then-linear learning-rate schedules.
    if released_g is None:
        generator = Pix2PixGenerator(base_channels=config.base_channels, num_downs=config.num_downs,
                                     dropout=config.dropout, direction=config.direction, upsample=config.upsample,
                                     **(dict(palette=LEGEND_PALETTE, class_names=PREDICTED_CLASSES,
                                             outlines=LEGEND_OUTLINES) if config.legend else {}))
    else:
        generator = plain_copy(released_g, direction=config.direction)
    if released_d is None:
        discriminator = PatchDiscriminator(base_channels=config.discriminator_channels,
                                           num_layers=config.discriminator_layers)
    else:
        discriminator = plain_copy(released_d)
    trainable_d = freeze_blocks(discriminator, config.freeze_discriminator_layers)
    training_layers(generator)  # the U-Net's small inner layers as one matrix product: same weights (models/fast.py)
    # channels_last applies to the images (and so to every activation); the weights stay contiguous:
    # fused Adam copies non-contiguous (channels_last) weights on every step - measured 25 % of a
    # batch-1 step on a 2-core CPU.
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    ema = EMAModel(generator.parameters(), decay=config.ema_decay, use_ema_warmup=True) if config.ema_decay else None
    betas = (config.adam_beta1, config.adam_beta2)  # fused=True: one kernel over all weights, ~3.5x faster on CPU
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=config.learning_rate, betas=betas, fused=True)
    optimizer_d = torch.optim.Adam(trainable_d, lr=config.learning_rate, betas=betas, fused=True)

    generator, discriminator, optimizer_g, optimizer_d, train_dataloader = accelerator.prepare(
        generator, discriminator, optimizer_g, optimizer_d, train_dataloader)
    max_train_steps = run.schedule(train_dataloader)
    constant_steps = int(max_train_steps * config.decay_start)
    schedulers = [torch.optim.lr_scheduler.SequentialLR(optimizer, milestones=[constant_steps], schedulers=[
        torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=constant_steps),
        torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, 0.0, total_iters=max(1, max_train_steps - constant_steps))])
        for optimizer in (optimizer_g.optimizer, optimizer_d.optimizer)]  # stepped once per optimizer step
    for obj in [*schedulers, *([ema] if ema is not None else [])]:
        accelerator.register_for_checkpointing(obj)
    run.begin(checkpoint, global_step)  # writes the config, resumes, starts the logs

    def release_generator() -> Pix2PixGenerator:
        """A plain fp32 copy of the generator with the EMA weights, in eval mode."""
        model = plain_copy(accelerator.unwrap_model(generator))
        if ema is not None:
            ema.copy_to(model.parameters())
        if config.logit_adjustment:
            model.shift_class_logits(-config.logit_adjustment * class_weights.log())
        return model.eval()

    def discriminator_step(fake: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(1) Update D: (source, target) is real, (source, G(source)) is fake. Returns D's loss."""
        # Real and fake pairs in one call: D normalises each image on its own (instance norm), so this
        # is two calls' result at one call's cost in weight traffic.
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
        return loss_d

    def sample_grid(model: Pix2PixGenerator, path) -> None:
        """One row per fixed pair: source | generated | target (eval mode, as after loading)."""
        with torch.no_grad(), accelerator.autocast():
            fake = model(sample_source.to(device)).float().cpu()  # eval mode: a legend model's crisp map
        rows = torch.stack([sample_source, fake, sample_target], dim=1).flatten(0, 1)  # (3N, 3, H, W)
        save_grid(rows, path, columns=3)

    # Train!
    accelerator.print(f"{len(dataset)} pairs, {config.direction}, {accelerator.num_processes} process(es), "
                      f"{run.total_batch} pairs per step, {max_train_steps} steps, precision {accelerator.mixed_precision}"
                      + (f", from {config.init_from}" if config.init_from and checkpoint is None else ""))
    for batch in run.batches(train_dataloader):
        source = batch[source_column].to(memory_format=memory_format)  # (B, 3, crop, crop)
        target = batch[target_column].to(memory_format=memory_format)
        if config.legend:  # targets: the real map's legend classes; what D sees: them drawn in the palette
            target_classes = legend_classes(to_uint8(target.float()))  # (B, H, W)
            ignored = target_classes == IGNORED  # text and icons: drawn as background for D, no loss
            palette = accelerator.unwrap_model(generator)
            drawn = F.one_hot(target_classes.masked_fill(ignored, BACKGROUND), len(LEGEND_PALETTE))
            target = palette.render(drawn.permute(0, 3, 1, 2)).to(memory_format=memory_format)
            target_classes = target_classes.masked_fill(ignored, -100)
        with accelerator.accumulate(generator, discriminator):
            if config.legend:
                logits = generator(source, output="logits")  # (B, classes, H, W)
                probabilities = logits.float().softmax(dim=1)
                fake = palette.render(probabilities)
            else:
                fake = generator(source)
            if config.lambda_gan == 0:  # reconstruction only: no discriminator
                loss_g_gan = loss_d = torch.zeros((), device=device)
            else:
                loss_d = discriminator_step(fake, source, target)
                # (2) Update G: fool D (frozen) ...
                discriminator.requires_grad_(False)
                fake_logits = discriminator(torch.cat([source, fake], dim=1))
                loss_g_gan = hinge_generator_loss(fake_logits) if config.loss == "hinge" \
                    else bce_generator_loss(fake_logits)
                for p in trainable_d:  # all but the Freeze-D blocks
                    p.requires_grad_(True)
            # ... and stay close to the target: L1 on RGB, or cross-entropy on the legend classes.
            if config.legend:
                loss_rec = F.cross_entropy(logits.float(), target_classes, weight=class_weights)
                loss_g = config.lambda_gan * loss_g_gan + config.lambda_ce * loss_rec
                if config.lambda_dice:
                    loss_dice = soft_dice_loss(probabilities, target_classes)
                    loss_g = loss_g + config.lambda_dice * loss_dice
            else:
                loss_rec = l1_loss(fake, target)
                loss_g = config.lambda_gan * loss_g_gan + config.lambda_l1 * loss_rec
                if config.lambda_ssim:
                    loss_ssim = ssim_loss(fake, target)
                    loss_g = loss_g + config.lambda_ssim * loss_ssim
            accelerator.backward(loss_g)
            optimizer_g.step()
            optimizer_g.zero_grad()

        if not accelerator.sync_gradients:
            continue
        for scheduler in schedulers:
            scheduler.step()
        if ema is not None:
            ema.step(accelerator.unwrap_model(generator).parameters())
        logs = {"loss_d": loss_d, "loss_g_gan": loss_g_gan, "loss_ce" if config.legend else "loss_l1": loss_rec,
                "lr": schedulers[0].get_last_lr()[0], **({"loss_dice": loss_dice} if config.lambda_dice else {}),
                **({"loss_ssim": loss_ssim} if config.lambda_ssim else {})}
        if run.end_step(logs, lambda path: sample_grid(release_generator(), path), release_generator):
            break  # logs, checkpoints, samples and snapshots are written when due; the time budget ran out
    run.finish()

    # Save: the (EMA) generator, its samples and loss curves, the discriminator, and a model card.
    if accelerator.is_main_process:
        final = release_generator()
        sample_grid(final, output_dir / "samples.png")
        metrics = evaluate(final, config) if config.eval_split else {}
        run.save_release(final, discriminator, metrics, title=f"pix2pix {config.direction} ({config.preset} recipe)",
                         sample_image="samples.png" if config.card_samples else None)
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
