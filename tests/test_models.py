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


def test_dcgan_default_is_the_original_architecture():
    g, d = DCGANGenerator(), DCGANDiscriminator()
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


@pytest.mark.parametrize("kwargs, message", [
    ({"image_size": 100}, "image_size must be one of"),
    ({"channels": [8, 8]}, "needs 5 channels"),
    ({"num_classes": 2, "class_names": ["a"]}, "1 class_names"),
    ({"upsample": "bilinear"}, "upsample must be"),
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
