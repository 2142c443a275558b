"""Prompt tuning (Lester, Al-Rfou and Constant, EMNLP 2021; the whitepaper's section 13.3): a
few learned "virtual token" embeddings are prepended to every input of a frozen text encoder,
and only they (and the head) train. The embeddings are peft's ``PromptEmbedding``; the encoder
prepends them itself (:meth:`transferlab.backbones.TextEncoder.add_prompt`), so the model stays
a plain encoder with its own parameter names and layer groups.
"""

from __future__ import annotations

from dataclasses import dataclass

from transferlab.backbones import Backbone, LayerGroup, TextEncoder
from transferlab.errors import ConfigError

INITS = ("sample_vocab", "random")


@dataclass(frozen=True)
class PromptTuning:
    """Learned virtual tokens before each input.

    Args:
        num_virtual_tokens: how many embeddings are prepended.
        init: ``sample_vocab`` starts them at the embeddings of random vocabulary tokens
            (peft's default); ``random`` at random vectors.
    """

    num_virtual_tokens: int = 20
    init: str = "sample_vocab"

    def __post_init__(self):
        n = self.num_virtual_tokens
        if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
            raise ConfigError(
                f"strategy.peft.num_virtual_tokens must be a whole number >= 1, got {n!r}."
            )
        if self.init not in INITS:
            raise ConfigError(f"strategy.peft.init must be one of {INITS}, got {self.init!r}.")


def apply_prompt_tuning(backbone: Backbone, spec: PromptTuning) -> Backbone:
    """``backbone`` with ``spec``'s virtual tokens added; they sit in the bottom (embeddings)
    group, the input end, and are the only backbone parameters that train."""
    from peft import PromptEmbedding, PromptTuningConfig

    model = backbone.model
    if not isinstance(model, TextEncoder):
        raise ConfigError(
            "strategy=prompt_tuning prepends virtual tokens to a text encoder's input; choose "
            "backbone=minilm or backbone=hf (for images, try strategy=lora or strategy=adapters)."
        )
    words = model.transformer.get_input_embeddings()
    config = PromptTuningConfig(
        task_type="FEATURE_EXTRACTION",
        num_virtual_tokens=spec.num_virtual_tokens,
        token_dim=words.embedding_dim,
        num_transformer_submodules=1,
        prompt_tuning_init=spec.init.upper(),
    )
    model.add_prompt(PromptEmbedding(config, words), spec.num_virtual_tokens)
    added = tuple(n for n, _ in model.named_parameters() if n.startswith("prompt."))
    bottom, *rest = backbone.groups
    groups = [LayerGroup(bottom.name, bottom.param_names + added), *rest]
    return Backbone(model, backbone.num_features, groups, tunable=added, added=added)
