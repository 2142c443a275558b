"""Parameter-efficient fine-tuning: LoRA (Hugging Face peft), BitFit and bottleneck adapters,
placed into the backbone's layer groups.

Each method is a plain spec (built from ``strategy.peft`` by Hydra) and :func:`apply_peft`, which
turns a built :class:`~transferlab.backbones.Backbone` into one whose new parameters sit in the
layer group of the block they belong to and whose ``tunable`` set names what may train. Base
weights stay in their groups, frozen, so the static optimizer groups, layer-wise LR decay,
``backbone_lr_mult`` and gradual unfreezing apply to the adapters unchanged.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from torch import nn

from transferlab.backbones import Backbone, LayerGroup
from transferlab.errors import ConfigError

# the child name under which an adapted module keeps the original (peft's convention, reused by
# the bottleneck adapters), so base weights keep their timm names minus this component
BASE = "base_layer"

# per-architecture defaults, by timm model class; `*` matches one dotted name component and a
# pattern matches the end of a module name
LORA_TARGETS = {
    "VisionTransformer": ("attn.qkv", "attn.proj"),  # ViT, DeiT
    "ConvNeXt": ("mlp.fc1", "mlp.fc2"),  # the pointwise (1x1) layers of each block
    "ResNet": ("layer*.*.conv*",),  # every conv of the residual blocks (peft's Conv2d LoRA)
    "EfficientNet": ("blocks.*.*.conv*",),  # non-depthwise block convs (expansion, projection)
    "TextEncoder": ("query", "value"),  # BERT family: attention queries and values (Hu et al.)
}
VIT_MLP = ("mlp.fc1", "mlp.fc2")
ADAPTER_TARGETS = {
    "VisionTransformer": ("blocks.*.mlp",),
    "ConvNeXt": ("stages.*.blocks.*.mlp",),
    "ResNet": ("layer*.*",),
    "EfficientNet": ("blocks.*.*",),
    "TextEncoder": ("layer.*.output",),  # after each transformer layer's feed-forward block
}


@dataclass(frozen=True)
class LoRA:
    """Low-rank updates W + (alpha / r) B A on chosen Linear / Conv2d layers (peft's LoRA).

    Args:
        r: rank of the update.
        alpha: scale numerator (the update is scaled by alpha / r).
        dropout: dropout on the LoRA branch's input.
        target_modules: layer name patterns (``attn.qkv``, ``layer*.*.conv*``); null uses the
            architecture's defaults (:data:`LORA_TARGETS`).
        mlp: with the default ViT targets, also adapt ``mlp.fc1`` and ``mlp.fc2``.
    """

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: Sequence[str] | None = None
    mlp: bool = False

    def __post_init__(self):
        if not (isinstance(self.r, int) and self.r >= 1):
            raise ConfigError(f"strategy.peft.r must be a whole number >= 1, got {self.r!r}.")
        if not self.alpha > 0 or not 0 <= self.dropout < 1:
            raise ConfigError(
                f"strategy.peft.alpha must be > 0 and strategy.peft.dropout in [0, 1), got "
                f"{self.alpha} and {self.dropout}."
            )
        _freeze_targets(self)


@dataclass(frozen=True)
class BitFit:
    """Train the biases only (Ben Zaken et al., ACL 2022); ``norms`` adds norm-layer scales."""

    norms: bool = False


@dataclass(frozen=True)
class Adapters:
    """A bottleneck adapter x + up(gelu(down(x))) after each chosen module (Houlsby et al., ICML
    2019): each block's MLP in transformers and ConvNeXt, each residual block in CNNs.

    Args:
        bottleneck: hidden width of the adapter.
        target_modules: module name patterns; null uses :data:`ADAPTER_TARGETS`.
    """

    bottleneck: int = 16
    target_modules: Sequence[str] | None = None

    def __post_init__(self):
        if not (isinstance(self.bottleneck, int) and self.bottleneck >= 1):
            raise ConfigError(
                f"strategy.peft.bottleneck must be a whole number >= 1, got {self.bottleneck!r}."
            )
        _freeze_targets(self)


def _freeze_targets(spec) -> None:
    targets = spec.target_modules
    if targets is None:
        return
    if isinstance(targets, str):  # one name given without brackets
        targets = [targets]
    object.__setattr__(spec, "target_modules", tuple(str(t) for t in targets))


# -- pure functions over names -----------------------------------------------------------------
def canonical(name: str) -> str:
    """A parameter's name without the wrapper components adapters insert."""
    return ".".join(p for p in name.split(".") if p != BASE)


def matches(name: str, pattern: str) -> bool:
    """Whether module ``name`` ends with ``pattern``, component by component (``*`` = one)."""
    parts, want = name.split("."), pattern.split(".")
    return len(parts) >= len(want) and all(
        fnmatchcase(p, w) for p, w in zip(parts[-len(want) :], want, strict=True)
    )


def resolve_targets(module_names: Sequence[str], patterns: Sequence[str], what: str) -> list[str]:
    """Every name in ``module_names`` that a pattern matches; a pattern matching none is a
    :class:`ConfigError` naming the closest module names."""
    found = []
    for pattern in patterns:
        hits = [n for n in module_names if matches(n, pattern)]
        if not hits:
            raise ConfigError(unmatched_message(pattern, module_names, what))
        found += [n for n in hits if n not in found]
    return found


def unmatched_message(pattern: str, module_names: Sequence[str], what: str) -> str:
    """One sentence: ``pattern`` matches no module; the module names like it."""
    k = len(pattern.split("."))
    generic = sorted({re.sub(r"(?<![^.])\d+(?![^.])", "*", n) for n in module_names})
    tails = sorted({".".join(g.split(".")[-k:]) for g in generic})
    close = difflib.get_close_matches(pattern, tails, n=6, cutoff=0.5) or tails[:8]
    return (
        f"strategy.peft.target_modules entry '{pattern}' matches no {what} of this backbone; "
        f"its names closest to it are {', '.join(close)}, so set "
        f"strategy.peft.target_modules=[{close[0]}] or another of these."
    )


def place_parameters(groups: Sequence[LayerGroup], names: Sequence[str]) -> list[LayerGroup]:
    """The layer groups again, over ``names`` (a backbone's parameters after adapters were
    added or merged): each name goes to the group of its original parameter, or else to the
    group of the deepest module it sits in that only one group's parameters share."""
    owner, prefix_owner = {}, {}
    for i, group in enumerate(groups):
        for n in group.param_names:
            owner[canonical(n)] = i
    for n, i in owner.items():
        parts = n.split(".")
        for k in range(1, len(parts)):
            prefix = ".".join(parts[:k])
            prefix_owner[prefix] = i if prefix_owner.get(prefix, i) == i else None  # None: shared
    placed: list[list[str]] = [[] for _ in groups]
    for name in names:
        parts = canonical(name).split(".")
        candidates = [owner.get(canonical(name))]
        candidates += [prefix_owner.get(".".join(parts[:k])) for k in range(len(parts) - 1, 0, -1)]
        i = next((c for c in candidates if c is not None), None)
        if i is None:
            raise ValueError(f"parameter '{name}' sits in no single layer group")
        placed[i].append(name)
    return [LayerGroup(g.name, tuple(p)) for g, p in zip(groups, placed, strict=True)]


def bitfit_names(param_names: Sequence[str], norm_modules: set[str], norms: bool) -> set[str]:
    """BitFit's trainable parameters: every bias, and with ``norms`` the norm layers' scales."""
    tunable = {n for n in param_names if n.rsplit(".", 1)[-1] == "bias"}
    if norms:
        tunable |= {n for n in param_names if n.rpartition(".")[0] in norm_modules}
    return tunable


def default_targets(model: nn.Module, table: dict, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The architecture's default target patterns (by timm model class, subclasses included)."""
    for cls in type(model).__mro__:
        if cls.__name__ in table:
            vit = cls.__name__ == "VisionTransformer"
            return tuple(table[cls.__name__]) + (tuple(extra) if vit else ())
    raise ConfigError(
        f"strategy.peft has no default target modules for {type(model).__name__}; set "
        "strategy.peft.target_modules to layer names such as [blocks.*.attn.qkv]."
    )


# -- applying a spec to a backbone -------------------------------------------------------------
def apply_peft(backbone: Backbone, spec) -> Backbone:
    """``backbone`` with ``spec`` (LoRA, BitFit, Adapters, PromptTuning) applied: new parameters
    placed in the layer groups of their blocks, ``tunable`` naming the parameters it trains."""
    from transferlab.strategies.prompt import PromptTuning, apply_prompt_tuning

    if isinstance(spec, PromptTuning):
        return apply_prompt_tuning(backbone, spec)
    model = backbone.model
    before = {n for n, _ in model.named_parameters()}
    if isinstance(spec, BitFit):
        norms = {n for n, m in model.named_modules() if "Norm" in type(m).__name__}
        tunable = bitfit_names(list(before), norms, spec.norms)
        return Backbone(model, backbone.num_features, backbone.groups, tunable=tunable)
    if isinstance(spec, LoRA):
        inject_lora(model, spec)
        merge = merge_lora
    elif isinstance(spec, Adapters):
        from transferlab.strategies.adapters import inject_adapters

        patterns = spec.target_modules or default_targets(model, ADAPTER_TARGETS)
        targets = resolve_targets([n for n, _ in model.named_modules() if n], patterns, "module")
        inject_adapters(model, targets, spec.bottleneck)
        merge = None  # a bottleneck adapter is nonlinear: it stays in the graph
    else:
        raise ConfigError(
            f"strategy.peft must be LoRA, BitFit, Adapters or PromptTuning, got {spec!r}."
        )
    names = [n for n, _ in model.named_parameters()]
    groups = place_parameters(backbone.groups, names)
    added = {n for n in names if canonical(n) not in before}
    return Backbone(model, backbone.num_features, groups, tunable=added, added=added, merge=merge)


def lora_layers(model: nn.Module) -> list[str]:
    """Names of the modules peft's LoRA can adapt and later merge: Linear and ungrouped Conv2d
    (merging a grouped, e.g. depthwise, conv is not supported by peft)."""
    return [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)
    ]


def inject_lora(model: nn.Module, spec: LoRA) -> None:
    """Replace the target layers of ``model`` in place by peft LoRA layers."""
    from peft import LoraConfig, inject_adapter_in_model

    vit = any(c.__name__ == "VisionTransformer" for c in type(model).__mro__)
    if spec.mlp and (spec.target_modules or not vit):
        raise ConfigError(
            "strategy.peft.mlp=true adds the MLP layers to the default ViT targets only; list "
            "the layers in strategy.peft.target_modules instead (e.g. [blocks.*.mlp.fc1])."
        )
    patterns = spec.target_modules or default_targets(model, LORA_TARGETS, VIT_MLP * spec.mlp)
    targets = resolve_targets(lora_layers(model), patterns, "Linear or ungrouped Conv2d layer")
    # an exact-name regex: peft's list form would also match any module ending in a name
    exact = "|".join(re.escape(t) for t in targets)
    config = LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=f"^(?:{exact})$",
        bias="none",
    )
    inject_adapter_in_model(config, model)


def merge_lora(model: nn.Module, groups: Sequence[LayerGroup]):
    """(plain model, its groups): every LoRA update merged into its base layer, which then
    replaces the LoRA layer, as peft's ``merge_and_unload`` does for a ``PeftModel``."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge(safe_merge=True)
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.get_base_layer())
    return model, place_parameters(groups, [n for n, _ in model.named_parameters()])
