"""Shapes, ranges and configuration checks of the four networks."""

import pytest
import torch

from conftest import tiny_dcgan, tiny_pix2pix
from rsgan_hub import DCGANDiscriminator, DCGANGenerator, PatchDiscriminator, Pix2PixGenerator


@pytest.mark.parametrize("size", [64, 128, 256])
def test_dcgan_shapes_and_range(size, seeded):
    g, d = tiny_dcgan(size)
    images = g(torch.randn(3, 8))
    assert images.shape == (3, 3, size, size)
    assert images.min() >= -1 and images.max() <= 1
    assert d(images).shape == (3,)


def test_dcgan_default_is_the_project_recipe_and_seed_the_original():
    """The constructors' defaults are what train/dcgan.py trains by default (and the bundled model
    is); `.seed()` is the original project's network."""
    g, d = DCGANGenerator(), DCGANDiscriminator()
    assert g.project[0].out_features == 8 * 8 * 128 and g.init_config["upsample"] == "resize"
    assert [m[1].out_channels for m in g.blocks if isinstance(m, torch.nn.Sequential)] == [128, 64, 32, 16]
    assert [m.out_channels for m in d.body if isinstance(m, torch.nn.Conv2d)] == [16, 32, 64, 128, 128]
    assert hasattr(d.head, "weight_orig")  # spectral norm
    g, d = DCGANGenerator.seed(), DCGANDiscriminator.seed()
    assert g.project[0].out_features == 8 * 8 * 1024
    ups = [m for m in g.blocks if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [m.out_channels for m in ups] == [384, 256, 128, 64]
    assert all(m.kernel_size == (5, 5) and m.stride == (2, 2) for m in ups)
    convs = [m for m in d.body if isinstance(m, torch.nn.Conv2d)]
    assert [(m.out_channels, m.stride[0]) for m in convs] == [(64, 2), (128, 2), (256, 2), (384, 1), (1024, 2)]
    assert d.head.out_features == 1
    # N(0, 0.02) init
    assert abs(ups[1].weight.std().item() - 0.02) < 0.002


def test_dcgan_conditional_and_resize_upsampling(seeded):
    g, d = tiny_dcgan(64, num_classes=3, class_names=["Forest", "River", "Port"], upsample="resize")
    labels = torch.tensor([0, 1, 2])
    images = g(torch.randn(3, 8), labels)
    assert images.shape == (3, 3, 64, 64)
    assert d(images, labels).shape == (3,)
    assert g.class_index("forest") == 0
    with pytest.raises(ValueError, match="known classes: Forest, River, Port"):
        g.class_index("Desert")
    with pytest.raises(ValueError, match="class-conditional"):
        g(torch.randn(1, 8))
    # the class changes the image
    z = torch.randn(1, 8).repeat(2, 1)
    g.eval()
    out = g(z, torch.tensor([0, 1]))
    assert not torch.allclose(out[0], out[1])


def test_dcgan_condition_weight_blends_the_class_in(seeded):
    """condition=0: G and D ignore the class (the unconditional start of transitional conditioning);
    condition=1 is the default call; in between the class term is scaled."""
    g, d = tiny_dcgan(64, num_classes=3, class_names=["a", "b", "c"])
    g.eval(), d.eval()  # fixed batch-norm statistics and spectral-norm vectors
    z, x = torch.randn(2, 8), torch.rand(2, 3, 64, 64) * 2 - 1
    a, b = torch.tensor([0, 0]), torch.tensor([1, 2])
    with torch.no_grad():
        assert torch.equal(g(z, a, condition=0.0), g(z, b, condition=0.0))
        assert not torch.allclose(g(z, a), g(z, b))
        assert torch.equal(g(z, a), g(z, a, condition=1.0))
        unconditional, full = d(x, a, condition=0.0), d(x, a)
        assert torch.equal(unconditional, d(x, b, condition=0.0))
        assert torch.allclose(d(x, a, condition=0.5), (unconditional + full) / 2, atol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    ({"image_size": 100}, "image_size must be one of"),
    ({"channels": [8, 8]}, "needs 5 channels"),
    ({"num_classes": 2, "class_names": ["a"]}, "1 class_names"),
    ({"upsample": "bicubic"}, "upsample must be one of"),
])
def test_dcgan_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DCGANGenerator(**kwargs)


def test_discriminator_spectral_norm_hinge_config(seeded):
    d = DCGANDiscriminator(image_size=64, layers=[[8, 2], [8, 2], [8, 1], [8, 1], [8, 2]], norm="none",
                           spectral_norm=True)
    assert any("weight_orig" in n for n, _ in d.named_parameters())
    assert d(torch.randn(2, 3, 64, 64)).shape == (2,)


@pytest.mark.parametrize("hw", [(32, 32), (64, 96), (37, 50), (5, 7)])
def test_pix2pix_any_size(hw, seeded):
    g, d = tiny_pix2pix()
    x = torch.rand(2, 3, *hw) * 2 - 1
    y = g(x)
    assert y.shape == x.shape
    assert y.min() >= -1 and y.max() <= 1
    if min(hw) >= 32:  # the PatchGAN needs more than one pixel per instance-norm channel
        logits = d(torch.cat([x, y], 1))
        assert logits.shape == (2, 1, *d.output_shape(*hw))


def test_pix2pix_resize_decoder(seeded):
    """upsample="resize": every decoder layer is a nearest 2x resize + 3x3 convolution - no transposed
    convolution left - with the same shapes, any input size, and the legend head too."""
    g, _ = tiny_pix2pix(upsample="resize")
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in g.modules())
    resizes = [m for m in g.modules() if isinstance(m, torch.nn.Upsample)]
    assert len(resizes) == len(g.up) + 1 and all(m.mode == "nearest" for m in resizes)
    x = torch.rand(2, 3, 37, 50) * 2 - 1
    assert g(x).shape == x.shape
    legend, _ = tiny_pix2pix(upsample="resize", palette=[[0, 0, 0], [255, 255, 255]])
    assert legend(x, output="logits").shape == (2, 2, 37, 50)
    with pytest.raises(ValueError, match="upsample must be"):
        Pix2PixGenerator(upsample="bilinear")


def test_patch_discriminator_default_is_70px_patchgan():
    d = PatchDiscriminator()
    assert d.output_shape(256, 256) == (30, 30)  # the classic 30x30 grid of 70x70 patches
    assert d(torch.zeros(1, 6, 256, 256)).shape == (1, 1, 30, 30)


def test_pix2pix_default_unet_is_the_paper_one():
    g = Pix2PixGenerator()
    assert len(g.down) == 8 and len(g.up) == 7 and g.multiple == 256
    dropouts = [i for i, block in enumerate(g.up) if any(isinstance(m, torch.nn.Dropout) for m in block)]
    assert dropouts == [0, 1, 2]  # the three innermost decoder blocks
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules())


def test_pix2pix_eval_mode_matches_training_time_sampling(seeded):
    """Instance norm keeps no running statistics: after training steps in train mode, eval mode
    computes the same function as train mode without dropout."""
    g, _ = tiny_pix2pix(dropout=0.0)
    g.train()
    opt = torch.optim.SGD(g.parameters(), lr=0.1)
    for _ in range(3):  # a few updates with batch size 1, as pix2pix trains
        opt.zero_grad()
        g(torch.rand(1, 3, 32, 32)).mean().backward()
        opt.step()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        train_out = g(x)
        g.eval()
        eval_out = g(x)
    assert torch.equal(train_out, eval_out)


def test_pix2pix_step_learns_one_pair(seeded):
    """The pix2pix G step (GAN + 100 x L1, D frozen) on one fixed pair for a few dozen steps drives
    the L1 distance to the target down: the cheapest proof the step is wired right."""
    from rsgan_hub.losses import bce_discriminator_loss, bce_generator_loss, l1_loss

    generator = Pix2PixGenerator(base_channels=4, num_downs=5, dropout=0.0)
    discriminator = PatchDiscriminator(base_channels=4)
    source = torch.rand(1, 3, 32, 32) * 2 - 1
    target = torch.tanh(source.flip(1) * 2)  # a fixed function of the source: another colour order
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=5e-3, betas=(0.5, 0.999))
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    start = l1_loss(generator(source), target).item()
    for _ in range(60):
        fake = generator(source)
        loss_d = 0.5 * bce_discriminator_loss(discriminator(torch.cat([source, target], 1)),
                                              discriminator(torch.cat([source, fake.detach()], 1)))
        optimizer_d.zero_grad()
        loss_d.backward()
        optimizer_d.step()
        discriminator.requires_grad_(False)
        loss_g = bce_generator_loss(discriminator(torch.cat([source, fake], 1))) + 100 * l1_loss(fake, target)
        optimizer_g.zero_grad()
        loss_g.backward()
        optimizer_g.step()
        discriminator.requires_grad_(True)
    end = l1_loss(generator.eval()(source), target).item()
    assert end < 0.6 * start, (start, end)  # 0.66 -> 0.31 here


def test_dcgan_steps_learn_against_a_fixed_opponent(seeded):
    """Each DCGAN step does its job on a tiny batch when the other network is held fixed: a few dozen
    D steps separate fixed real images from fixed fakes (hinge loss down), then a few dozen G steps
    fool that frozen D (G's loss down) - the cheapest proof both steps are wired right (an adversarial
    run of this length proves nothing either way)."""
    from rsgan_hub.losses import hinge_discriminator_loss, hinge_generator_loss

    g, d = tiny_dcgan(64, num_classes=2)
    labels = torch.tensor([0, 1] * 4)
    real = torch.tanh(torch.randn(8, 3, 64, 64) + torch.tensor([1.0, -1.0, 0.0])[None, :, None, None])
    z = torch.randn(8, g.latent_dim)
    with torch.no_grad():
        fake = g(z, labels)
    optimizer_d = torch.optim.Adam(d.parameters(), lr=1e-3, betas=(0.5, 0.999))
    first_d = hinge_discriminator_loss(d(real, labels), d(fake, labels)).item()
    for _ in range(30):  # (1) D alone
        loss_d = hinge_discriminator_loss(d(real, labels), d(fake, labels))
        optimizer_d.zero_grad()
        loss_d.backward()
        optimizer_d.step()
    assert loss_d.item() < 0.5 * first_d, (first_d, loss_d.item())
    optimizer_d.zero_grad()  # grads None
    d.requires_grad_(False)
    optimizer_g = torch.optim.Adam(g.parameters(), lr=1e-3, betas=(0.5, 0.999))
    first_g = hinge_generator_loss(d(g(z, labels), labels)).item()
    for _ in range(30):  # (2) G alone, against the frozen D
        loss_g = hinge_generator_loss(d(g(z, labels), labels))
        optimizer_g.zero_grad()
        loss_g.backward()
        optimizer_g.step()
    assert loss_g.item() < first_g - 0.5, (first_g, loss_g.item())
    assert all(p.grad is None for p in d.parameters())  # D stayed frozen through the G steps
