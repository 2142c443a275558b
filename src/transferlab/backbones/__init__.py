"""Backbones seen as ordered layer groups: timm image models (:mod:`.vision`) and Hugging Face
text encoders (:mod:`.text`)."""

from transferlab.backbones.text import (
    TextEncoder,
    create_text_backbone,
    load_tokenizer,
    text_layer_groups,
)
from transferlab.backbones.vision import (
    HEAD_GROUP,
    Backbone,
    LayerGroup,
    adapt_first_conv,
    create_backbone,
    layer_groups,
    load_backbone_weights,
    read_state_dict,
)

__all__ = [
    "HEAD_GROUP",
    "Backbone",
    "LayerGroup",
    "TextEncoder",
    "adapt_first_conv",
    "create_backbone",
    "create_text_backbone",
    "layer_groups",
    "load_backbone_weights",
    "load_tokenizer",
    "read_state_dict",
    "text_layer_groups",
]
