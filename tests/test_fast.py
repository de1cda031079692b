"""The faster forms in rsgan_hub.models.fast compute the functions of the plain layers they replace,
and are applied by replacing modules that share the plain layers' parameters."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rsgan_hub import DCGANGenerator, Pix2PixGenerator
from rsgan_hub.models.fast import (GemmConv2d, GemmConvTranspose2d, PhaseConvTranspose2d, ResizeConv2d,
                                   inference_copy, training_layers)


@pytest.mark.parametrize("kernel_size", [3, 5, 7])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("padding_mode", ["zeros", "replicate"])
def test_resize_conv_is_upsample_then_conv(kernel_size, bias, padding_mode):
    torch.manual_seed(0)
    layer = ResizeConv2d(nn.Conv2d(6, 5, kernel_size, 1, kernel_size // 2, bias=bias, padding_mode=padding_mode))
    if bias:
        nn.init.normal_(layer[1].bias)
    x = torch.randn(2, 6, 7, 9, requires_grad=True)
    reference = layer[1](F.interpolate(x, scale_factor=2, mode="nearest"))  # the two layers, run as written
    out = layer(x)
    assert out.shape == reference.shape == (2, 5, 14, 18)
    assert torch.allclose(out, reference, atol=1e-5)
    # the same gradients for the input and the (unfolded) weight
    grads = torch.autograd.grad(out.square().sum(), (x, layer[1].weight))
    expected = torch.autograd.grad(reference.square().sum(), (x, layer[1].weight))
    for got, want in zip(grads, expected):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        assert torch.allclose(layer.frozen()(x), reference, atol=1e-5)


def test_resize_conv_keeps_state_dict_keys_and_rejects_other_convolutions():
    assert set(ResizeConv2d(nn.Conv2d(4, 4, 5, 1, 2)).state_dict()) == {"1.weight", "1.bias"}
    keys = DCGANGenerator(image_size=64, channels=[32, 16, 8, 4], upsample="resize").state_dict()
    assert "blocks.0.1.weight" in keys  # the plain model's keys: weights load either way
    for conv in (nn.Conv2d(4, 4, 4, 1, 2), nn.Conv2d(4, 4, 5, 2, 2), nn.Conv2d(4, 4, 5, 1, 0),
                 nn.Conv2d(4, 4, 5, 1, 2, padding_mode="reflect")):
        with pytest.raises(ValueError, match="odd square kernel"):
            ResizeConv2d(conv)


@pytest.mark.parametrize("side", [1, 2, 4, 8, 32])
def test_gemm_layers_match_torch_in_training(side):
    """Small outputs take the matrix-product path, large ones oneDNN's: both must equal torch.nn's,
    values and gradients, in fp32 and under bf16 autocast."""
    torch.manual_seed(0)
    for plain, x_side in ((nn.Conv2d(16, 12, 4, 2, 1), 2 * side), (nn.ConvTranspose2d(16, 12, 4, 2, 1), side)):
        layer = (GemmConv2d if type(plain) is nn.Conv2d else GemmConvTranspose2d).sharing(plain)
        assert layer.weight is plain.weight and layer.bias is plain.bias
        x = torch.randn(2, 16, x_side, x_side).contiguous(memory_format=torch.channels_last).requires_grad_()
        out, reference = layer(x), plain(x)
        assert out.shape == reference.shape
        assert torch.allclose(out, reference, atol=1e-5)
        got = torch.autograd.grad(out.square().sum(), (x, layer.weight, layer.bias))
        want = torch.autograd.grad(reference.square().sum(), (x, plain.weight, plain.bias))
        for g, w in zip(got, want):
            assert torch.allclose(g, w, rtol=1e-4, atol=1e-3)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast, slow = layer(x), plain(x)
        assert (fast.float() - slow.float()).abs().max() <= 0.05 * slow.float().abs().max()


def test_training_layers_replace_modules_and_share_the_weights():
    """The model files are plain torch.nn; training_layers swaps in the fast forms in place, holding
    the same parameters (state dict, optimizer and EMA see no change) and computing the same function."""
    torch.manual_seed(0)
    g = Pix2PixGenerator(base_channels=4, num_downs=5)
    assert not any(isinstance(m, (GemmConv2d, GemmConvTranspose2d)) for m in g.modules())  # a plain model file
    plain = Pix2PixGenerator(base_channels=4, num_downs=5, dropout=0.0)
    plain.load_state_dict(g.state_dict())
    before = {k: v.clone() for k, v in g.state_dict().items()}
    params = list(g.parameters())
    training_layers(g)
    assert isinstance(g.down[1][0], GemmConv2d) and isinstance(g.up[0][0], GemmConvTranspose2d)
    assert all(a is b for a, b in zip(params, g.parameters()))  # the same Parameter objects
    assert g.state_dict().keys() == before.keys() and all(torch.equal(before[k], v) for k, v in g.state_dict().items())
    fast = Pix2PixGenerator(base_channels=4, num_downs=5, dropout=0.0)
    fast.load_state_dict(g.state_dict())
    training_layers(fast)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.allclose(fast(x), plain(x), atol=1e-5)  # in training mode, where the matrix products run
    d = DCGANGenerator(image_size=64, channels=[32, 16, 8, 4], upsample="resize")
    training_layers(d)
    assert sum(isinstance(m, ResizeConv2d) for m in d.modules()) == 3
    assert "blocks.0.1.weight" in d.state_dict()


@pytest.mark.parametrize("bias", [False, True])
def test_phase_conv_transpose_matches(bias):
    torch.manual_seed(0)
    deconv = nn.ConvTranspose2d(10, 3, 4, 2, 1, bias=bias)
    x = torch.randn(2, 10, 5, 7)
    with torch.no_grad():
        assert torch.allclose(PhaseConvTranspose2d(deconv)(x), deconv(x), atol=1e-5)
    with pytest.raises(ValueError, match="kernel 4"):
        PhaseConvTranspose2d(nn.ConvTranspose2d(10, 3, 3, 2, 1))


def test_inference_copy_uses_the_reformulations():
    g = DCGANGenerator(image_size=64, channels=[32, 16, 8, 4], upsample="resize").eval()
    fast = inference_copy(g, "fp32")
    assert not any(isinstance(m, ResizeConv2d) for m in fast.modules())
    p = Pix2PixGenerator(base_channels=32, num_downs=5)
    assert isinstance(inference_copy(p, "fp32").to_image[0], PhaseConvTranspose2d)
    z = torch.randn(3, g.latent_dim)
    with torch.inference_mode():
        assert torch.allclose(fast(z), g(z), atol=1e-5)


def test_bilinear_resize_blocks_stay_plain_and_copy_exactly():
    """ResizeConv2d folds only nearest resizes: a bilinear generator keeps its Upsample + Conv2d
    blocks in training and in its inference copy, which computes the same images."""
    g = DCGANGenerator(image_size=64, channels=[32, 16, 8, 4], upsample="bilinear")
    assert not ResizeConv2d.fits(g.blocks[0])
    training_layers(g)
    assert not any(isinstance(m, ResizeConv2d) for m in g.modules())
    assert [m.mode for m in g.modules() if isinstance(m, nn.Upsample)] == ["bilinear"] * 3
    g.eval()
    z = torch.randn(3, g.latent_dim)
    with torch.inference_mode():
        assert torch.allclose(inference_copy(g, "fp32")(z), g(z), atol=1e-5)


def test_unet_resize_decoder_gets_the_subpixel_form():
    """A resize-decoder U-Net: training_layers turns each resize + 3x3 conv into ResizeConv2d
    (the same function in training mode, shared parameters); its inference copy matches eval mode."""
    torch.manual_seed(0)
    plain = Pix2PixGenerator(base_channels=4, num_downs=5, dropout=0.0, upsample="resize")
    fast = Pix2PixGenerator(base_channels=4, num_downs=5, dropout=0.0, upsample="resize")
    fast.load_state_dict(plain.state_dict())
    training_layers(fast)
    assert sum(isinstance(m, ResizeConv2d) for m in fast.modules()) == 5
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(fast(x), plain(x), atol=1e-5)
    plain.eval()
    with torch.inference_mode():
        assert torch.allclose(inference_copy(plain, "fp32")(x), plain(x), atol=1e-5)


def test_replicate_padded_generator_trains_and_copies_exactly():
    """padding="replicate": every generator convolution replicates the edge (the to-RGB one too), the
    training form is ResizeConv2d with the same function, and the inference copy draws the same images;
    a transposed generator refuses it."""
    torch.manual_seed(0)
    g = DCGANGenerator(image_size=64, channels=[32, 16, 8, 4], upsample="resize", padding="replicate")
    convs = [m for m in g.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4 and {m.padding_mode for m in convs} == {"replicate"}
    z = torch.randn(3, g.latent_dim)
    plain = g.eval()(z)
    zeros = DCGANGenerator(image_size=64, channels=[32, 16, 8, 4], upsample="resize")
    zeros.load_state_dict(g.state_dict())  # the same weights: only the edges differ
    edge = (zeros.eval()(z) - plain).abs()
    assert edge[..., 20:-20, 20:-20].max() < 1e-6 < edge[..., :2, :].max()  # 4 layers reach 16 px in
    training_layers(g)
    assert sum(isinstance(m, ResizeConv2d) for m in g.modules()) == 3
    with torch.inference_mode():
        assert torch.allclose(g(z), plain, atol=1e-5)
        assert torch.allclose(inference_copy(g, "fp32")(z), plain, atol=1e-5)
    with pytest.raises(ValueError, match="zeros only"):
        DCGANGenerator(image_size=64, channels=[32, 16, 8, 4], upsample="transposed", padding="replicate")
    with pytest.raises(ValueError, match="padding must be one of"):
        DCGANGenerator(image_size=64, channels=[32, 16, 8, 4], padding="reflect")
