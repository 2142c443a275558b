"""Small backbones written out by hand, for reproducing papers on their own networks.

``dann_mnist`` is the feature extractor of the DANN paper's MNIST -> MNIST-M experiment (Ganin &
Lempitsky 2015, ICML; Ganin et al. 2016, JMLR, section 5.2.2): conv 5x5 with 32 filters, ReLU,
max-pool 2; conv 5x5 with 48 filters, ReLU, max-pool 2; flattened. The paper's label predictor
(100-100) is the framework's head (``head.hidden=[100,100]``) and its 100-unit domain classifier
is ``domain_adaptation.alignment.hidden=[100]``; ``experiment=dann_paper`` sets both.
"""

from __future__ import annotations

import torch
from torch import nn

from transferlab.backbones.vision import Backbone, LayerGroup, load_backbone_weights
from transferlab.errors import ConfigError


class DANNMnistFeatures(nn.Module):
    """The two conv blocks; each ``conv`` is one layer group (``conv1`` bottom, ``conv2`` top).

    Args:
        in_chans: input channels.
        batch_norm: a BatchNorm after each convolution; the paper has none, AdaBN needs it.
    """

    def __init__(self, in_chans: int = 3, batch_norm: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 32, 5)
        self.bn1 = nn.BatchNorm2d(32) if batch_norm else nn.Identity()
        self.conv2 = nn.Conv2d(32, 48, 5)
        self.bn2 = nn.BatchNorm2d(48) if batch_norm else nn.Identity()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        return x.flatten(1)


def dann_mnist_feature_dim(image_size: int) -> int:
    """Flattened feature width for square inputs of ``image_size`` (768 at the paper's 28 px)."""
    side = ((image_size - 4) // 2 - 4) // 2
    if side < 1:
        raise ConfigError(
            f"The dann_mnist backbone needs images of at least 16 px, got {image_size}; set "
            "data.image_size=28 (the paper's size)."
        )
    return 48 * side * side


def create_dann_mnist(
    name: str = "dann_mnist",
    pretrained: bool = False,
    weights: str | None = None,
    in_chans: int = 3,
    image_size: int = 28,
    batch_norm: bool = False,
) -> Backbone:
    """The DANN paper's MNIST feature extractor as a :class:`Backbone` (groups conv1, conv2).

    Args:
        name: the name weights files are found by (``mnist_source_<name>.safetensors``).
        pretrained: refused: there are no hub weights for this network.
        weights: a weights file of this network (a state dict or a transferlab checkpoint).
        in_chans: input channels of the data.
        image_size: the square input side, which fixes the feature width.
        batch_norm: add BatchNorm after each convolution (for ``domain_adaptation=adabn``).
    """
    if pretrained:
        raise ConfigError(
            "The dann_mnist backbone has no hub weights; set backbone.pretrained=false, and "
            "backbone.weights=<file> to start from weights of your own."
        )
    if not isinstance(image_size, int) or isinstance(image_size, bool):
        raise ConfigError(
            f"backbone.image_size must be a whole number of pixels, got {image_size!r}; set "
            "data.image_size=28."
        )
    model = DANNMnistFeatures(in_chans, batch_norm)
    if weights:
        load_backbone_weights(model, weights)
    # a conv block's BatchNorm trains and freezes with its convolution
    names = [n for n, _ in model.named_parameters()]
    groups = [
        LayerGroup(f"conv{i}", tuple(n for n in names if n.split(".")[0] in (f"conv{i}", f"bn{i}")))
        for i in (1, 2)
    ]
    return Backbone(model, dann_mnist_feature_dim(image_size), groups)
