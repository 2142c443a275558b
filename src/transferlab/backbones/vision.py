"""timm backbones: any timm model, seen as ordered layer groups, with weights from hub, file or
scratch."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from timm.models import adapt_input_conv, group_parameters
from torch import nn

from transferlab.errors import ConfigError

HEAD_GROUP = "head"  # reserved for the classifier head built by transferlab.heads


@dataclass(frozen=True)
class LayerGroup:
    """A named slice of backbone parameters; groups are ordered bottom (input) to top."""

    name: str
    param_names: tuple[str, ...]


class Backbone(nn.Module):
    """A feature extractor (images -> pooled features) with ordered layer groups.

    Args:
        model: a module mapping images to ``[batch, num_features]`` features.
        num_features: the feature dimension.
        groups: ordered layer groups; derived with :func:`layer_groups` when omitted.
        tunable: names of the parameters a training group may train (a parameter-efficient
            strategy's adapters or biases); None: all of them.
        added: names of the parameters an adapter method added to the timm model.
        merge: ``(model, groups) -> (plain model, its groups)`` folding the adapters into the
            base weights (LoRA), or None.
    """

    def __init__(
        self,
        model: nn.Module,
        num_features: int,
        groups: list[LayerGroup] | None = None,
        tunable: Iterable[str] | None = None,
        added: Iterable[str] = (),
        merge: Callable | None = None,
    ):
        super().__init__()
        self.model = model
        self.num_features = num_features
        self.groups = groups if groups is not None else layer_groups(model)
        self.tunable = frozenset(tunable) if tunable is not None else None
        self.added = frozenset(added)
        self.merge = merge

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def trains(self, param_name: str) -> bool:
        """Whether ``param_name`` trains when its group does (base weights under PEFT do not)."""
        return self.tunable is None or param_name in self.tunable

    def merge_adapters(self) -> None:
        """Fold the adapters into the base weights, leaving the plain timm model (export uses
        this); the outputs stay the same. Nothing to do without mergeable adapters."""
        if self.merge is not None:
            self.model, self.groups = self.merge(self.model, self.groups)
            self.tunable, self.added, self.merge = None, frozenset(), None


def layer_groups(model: nn.Module) -> list[LayerGroup]:
    """Ordered layer groups: timm's coarse ``group_matcher`` if the model has one, else children."""
    if hasattr(model, "group_matcher"):
        grouped = group_parameters(model, model.group_matcher(coarse=True))
        names_per_group = [tuple(names) for _, names in sorted(grouped.items())]
    else:
        names_per_group = []
        for child_name, child in model.named_children():
            names = tuple(f"{child_name}.{n}" for n, _ in child.named_parameters())
            if names:
                names_per_group.append(names)
    timm_model = hasattr(model, "group_matcher")
    groups, seen = [], {HEAD_GROUP}
    for i, names in enumerate(names_per_group):
        others = [n for j, g in enumerate(names_per_group) if j != i for n in g]
        name = "stem" if i == 0 and timm_model else _unique_prefix(names[0], others)
        if name == HEAD_GROUP:  # e.g. ConvNeXt's pre-logits norm; "head" is our classifier
            name = "pre_head"
        while name in seen:
            name = f"{name}_{i}"
        seen.add(name)
        groups.append(LayerGroup(name, names))
    return groups


def _unique_prefix(param_name: str, others: list[str]) -> str:
    """Shortest dotted prefix of ``param_name`` that no other group shares: 'layer4', 'blocks.6'."""
    parts = param_name.split(".")
    for k in range(1, len(parts)):
        prefix = ".".join(parts[:k]) + "."
        if not any(o.startswith(prefix) for o in others):
            return prefix[:-1]
    return param_name


def create_backbone(
    name: str,
    pretrained: bool = False,
    weights: str | None = None,
    in_chans: int = 3,
    drop_path_rate: float = 0.0,
    model_args: dict | None = None,
) -> Backbone:
    """Create a timm model without its classifier and wrap it as a :class:`Backbone`.

    Args:
        name: a timm model name, e.g. ``resnet18`` or ``vit_base_patch16_224.augreg_in21k``.
        pretrained: load the timm hub weights (needs network access or a filled hub cache).
        weights: a local weights file: timm/torchvision state dict (.pth/.pt/.bin/.safetensors)
            or a transferlab checkpoint (.ckpt). Its classifier is dropped.
        in_chans: input channels of the data; pretrained first-conv weights are adapted to it.
        drop_path_rate: stochastic depth rate, for models that support it.
        model_args: further architecture settings for ``timm.create_model`` (a small ViT for
            32 px digits: ``{img_size: 32, patch_size: 8}``).
    """
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models() for names."
        raise ConfigError(f"Unknown backbone '{name}': {hint}")
    if pretrained and weights:
        raise ConfigError(
            "Set either backbone.pretrained=true or backbone.weights=<file>, not both."
        )
    kwargs = {"num_classes": 0, "in_chans": in_chans}
    if drop_path_rate:
        kwargs["drop_path_rate"] = drop_path_rate
    kwargs.update(dict(model_args or {}))
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError as e:  # a model_args key the architecture does not take
        if not model_args:
            raise
        raise ConfigError(
            f"backbone.model_args {dict(model_args or {})} do not fit '{name}' ({e}); "
            "remove the setting it names."
        ) from e
    except (OSError, RuntimeError, ConnectionError) as e:
        if not pretrained:
            raise
        raise ConfigError(
            f"Could not load hub weights for '{name}' ({type(e).__name__}); go online once to fill "
            "the hub cache, or set backbone.weights=<local file> or backbone.pretrained=false."
        ) from e
    if weights:
        load_backbone_weights(model, weights)
    num_features = getattr(model, "head_hidden_size", None) or model.num_features
    return Backbone(model, num_features)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file; unwraps Lightning checkpoints down to the backbone's own keys."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"Weights file '{path}' does not exist; check backbone.weights, or create the "
            "source backbone with `transferlab-train experiment=pretrain_source backbone=<same "
            "choice>` (`make pretrain` does it for resnet18), or set backbone.weights=null."
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # safetensors, pickle, zip and EOF errors of a damaged file
        raise ConfigError(
            f"Weights file '{path}' cannot be read as plain tensors ({type(e).__name__}): it is "
            "empty, truncated or not a weights file; re-create it, or set backbone.weights to "
            "another file (or null)."
        ) from e
    if not isinstance(state, dict):
        raise ConfigError(
            f"Weights file '{path}' holds no state dict; set backbone.weights to a timm or "
            "torchvision weights file or a transferlab checkpoint."
        )
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    prefix = "backbone.model."
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if any(".base_layer." in k or ".lora_" in k or ".adapter" in k for k in state):
        raise ConfigError(
            f"'{path}' holds a backbone with PEFT layers (LoRA or adapters), not plain weights; "
            "train that run with export_backbone=<file>.safetensors (LoRA is merged into it) "
            "and set backbone.weights to that file."
        )
    return state


def load_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """Load a weights file into a classifier-less timm model, checking that every tensor fits."""
    state = read_state_dict(path)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    classifiers = cfg.get("classifier") or ()
    classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
    state = {k: v for k, v in state.items() if not any(k.startswith(c + ".") for c in classifiers)}
    first_conv = cfg.get("first_conv")
    first_convs = (first_conv,) if isinstance(first_conv, str) else tuple(first_conv or ())
    own = model.state_dict()
    for key, value in list(state.items()):
        if key not in own:
            continue
        want = own[key].shape
        if value.shape != want and key.removesuffix(".weight") in first_convs and value.ndim == 4:
            state[key] = adapt_first_conv(value, want[1])
        elif value.shape != want:
            raise ConfigError(
                f"Weights file '{path}' does not fit this backbone: '{key}' has shape "
                f"{tuple(value.shape)} but the model expects {tuple(want)}; set backbone.name to "
                "the model the file was saved from."
            )
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        first = (missing or unexpected)[0]
        what = "lacks" if missing else "has the extra tensor"
        raise ConfigError(
            f"Weights file '{path}' does not fit this backbone: it {what} '{first}' "
            f"({len(missing)} missing, {len(unexpected)} unexpected); set backbone.name to the "
            "model the file was saved from."
        )
    model.load_state_dict(state, strict=False)  # only BN batch counters may be absent


def adapt_first_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Fit first-conv weights to ``in_chans`` inputs: RGB weights on grey data (timm sums the
    channels) and grey weights on RGB data (spread evenly, so a grey image gives the same output)."""
    if weight.shape[1] == 1 and in_chans > 1:
        return weight.repeat(1, in_chans, 1, 1) / in_chans
    return adapt_input_conv(in_chans, weight)
