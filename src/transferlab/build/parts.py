"""Config -> model parts: augmentation, datamodule, backbone + head + strategy + optimizer as one
module, the domain-adaptation set-up and the regulariser. The only readers of a DictConfig below
the entry points live in this package."""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig

from transferlab.augment import Augmentation, pretrained_normalization
from transferlab.data import ImageDataModule, TextDataModule
from transferlab.domain import DomainAdaptationModule
from transferlab.errors import ConfigError
from transferlab.losses import create_loss
from transferlab.module import TransferModule
from transferlab.strategies import with_backbone_default

TEXT_BACKBONE = "transferlab.backbones.create_text_backbone"


def instantiate_part(node: DictConfig, key: str, **kwargs):
    """``instantiate(node, **kwargs)``; a setting the constructor does not take (a typo such as
    ``+strategy.trainable_grups=2``) is one sentence naming ``key`` and the closest setting."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if unknown is None:
            raise
        name = unknown.group(1)
        known = [k for k in node if not k.startswith("_") and k != name]
        close = difflib.get_close_matches(name, known, n=1)
        hint = (
            f"did you mean {key}.{close[0]}?" if close else f"its settings are {', '.join(known)}."
        )
        raise ConfigError(f"{key} has no setting '{name}'; {hint}") from e


def check_number(value, key: str, positive: bool = False, whole: bool = False) -> None:
    """Refuse a setting that is not a number (or not a positive / whole one)."""
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if whole and not (isinstance(value, int) and not isinstance(value, bool)):
        raise ConfigError(f"{key} must be a whole number, got {value!r}; for example {key}=0.")
    if not numeric or (positive and not value > 0):
        what = "a positive number" if positive else "a number"
        raise ConfigError(f"{key} must be {what}, got {value!r}; for example {key}=0.001.")


def build_augmentation(cfg: DictConfig) -> Augmentation | None:
    """The ``augmentation=`` choice, built once per run (the datamodule and the module share it)."""
    return instantiate_part(cfg.augmentation, "augmentation") if cfg.get("augmentation") else None


def build_datamodule(
    cfg: DictConfig, train_augmentation: bool = True, augmentation: Augmentation | None = None
) -> ImageDataModule:
    """The ``data=`` choice; training images get the augmentation's per-image pipeline.

    Args:
        cfg: a train config (or any config with ``data``, and ``augmentation`` if augmenting).
        train_augmentation: give training images the augmentation; false for evaluation uses.
        augmentation: the run's augmentation when already built (else built from ``cfg``).
    """
    if is_text_data(cfg.data):
        return build_text_datamodule(cfg)
    if is_text_backbone(cfg.get("backbone")):
        raise ConfigError(
            f"backbone={cfg.backbone.name} is a text encoder but data={data_choice(cfg)} holds "
            "images; choose text data (data=vader_polarity, data=text_file) or an image backbone."
        )
    if train_augmentation and augmentation is None:
        augmentation = build_augmentation(cfg)
    return instantiate_part(
        cfg.data, "data", augmentation=augmentation if train_augmentation else None
    )


def is_text_backbone(backbone_cfg) -> bool:
    return bool(backbone_cfg) and backbone_cfg.get("_target_") == TEXT_BACKBONE


def is_text_data(data_cfg: DictConfig) -> bool:
    target = data_cfg.get("_target_")
    return bool(target) and issubclass(get_class(target), TextDataModule)


def data_choice(cfg: DictConfig) -> str:
    return str(cfg.data.get("_target_", "?")).rsplit(".", 1)[-1]


def build_text_datamodule(cfg: DictConfig) -> TextDataModule:
    """A text ``data=`` choice, tokenised with the backbone's tokenizer."""
    from transferlab.backbones import load_tokenizer

    if not is_text_backbone(cfg.get("backbone")):
        raise ConfigError(
            f"data={data_choice(cfg)} holds text; choose a text backbone: backbone=minilm, or "
            "backbone=hf backbone.name=<model name or directory>."
        )
    augmentation = cfg.get("augmentation") or {}
    image_ops = (augmentation.get("image") or {}).get("_target_", "transferlab.augment.none")
    mixing = (augmentation.get("batch") or {}).get("_target_", "transferlab.augment.no_mixing")
    if (image_ops, mixing) != ("transferlab.augment.none", "transferlab.augment.no_mixing"):
        raise ConfigError(
            "Image augmentation and batch mixing do not apply to text; set augmentation=none."
        )
    return instantiate_part(cfg.data, "data", tokenizer=load_tokenizer(cfg.backbone.name))


def backbone_overrides(cfg: DictConfig, strategy, in_chans: int, for_training: bool) -> dict:
    """Arguments the build layer adds to ``backbone=``: the data's channels (images), no
    pretrained weights for scratch runs and checkpoints, no dropout in a text encoder that
    never trains (its features are then fixed, and can be cached)."""
    text = is_text_backbone(cfg.backbone)
    overrides = {} if text else {"in_chans": in_chans}
    if strategy.reinit or not for_training:
        overrides.update(pretrained=False, weights=None)
    frozen = strategy.trainable_groups == 0 and strategy.unfreeze is None
    if text and frozen and strategy.peft is None and cfg.backbone.get("dropout") is None:
        overrides["dropout"] = 0.0
    return overrides


def build_module(
    cfg: DictConfig,
    num_classes: int,
    in_chans: int,
    mean: list[float],
    std: list[float],
    extra: dict | None = None,
    for_training: bool = True,
    augmentation: Augmentation | None = None,
    fisher_provider: Callable | None = None,
    task: str = "classification",
    target_normalization: tuple[list[float], list[float]] | None = None,
    backbone=None,
) -> TransferModule:
    """Backbone + head + strategy + optimizer (+ regulariser) from the config; no data access.

    ``for_training=False`` builds the architecture only, for loading a checkpoint into: no
    pretrained weights are read and no regulariser is set up. ``augmentation`` is the run's
    (built from ``cfg`` when not given); ``fisher_provider(source_ckpt, num_samples)`` serves
    regularisers that estimate a Fisher from a source run (EWC). ``task`` is the data's
    (classification or regression); the loss must fit it. ``target_normalization`` is a domain
    pair's (mean, std) for target images (default: ``mean``, ``std``). ``backbone``: an already
    built (frozen) backbone to put the new head on, shared with other modules (a head sweep).
    """
    check_number(cfg.optimizer.get("lr"), "optimizer.lr", positive=True)
    check_number(cfg.optimizer.get("weight_decay", 0.0), "optimizer.weight_decay")
    strategy = with_backbone_default(
        instantiate_part(cfg.strategy, "strategy"), text=is_text_backbone(cfg.backbone)
    )
    loss_cfg = cfg.get("loss") or {}
    smoothing = loss_cfg.get("label_smoothing", 0.0)
    loss = create_loss(loss_cfg.get("name", "auto"), task, smoothing)
    if backbone is None:
        overrides = backbone_overrides(cfg, strategy, in_chans, for_training)
        backbone = instantiate_part(cfg.backbone, "backbone", **overrides)
        if strategy.peft is not None:
            from transferlab.strategies import apply_peft

            # before the regulariser anchors and before a checkpoint loads: both see adapters
            backbone = apply_peft(backbone, strategy.peft)
    # the head's first weights depend on the seed and the head config only, not on how many
    # random numbers the backbone drew: runs that differ in head settings alone start alike
    # (hydra/launcher=heads trains them in one process and relies on it)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.get("seed") or 0)
        head = instantiate_part(
            cfg.head, "head", in_features=backbone.num_features, num_classes=num_classes
        )
    regularizer = build_regularizer(cfg, backbone, head, fisher_provider) if for_training else None
    batch_augment = None
    if for_training and cfg.get("augmentation"):
        augmentation = augmentation or build_augmentation(cfg)
        batch_augment = augmentation.batch_transform(num_classes, cfg.data.batch_size)
    if for_training and uses_pretrained_statistics(cfg, strategy):
        # hub weights expect their own input statistics, not those of this data
        pretrained = getattr(backbone.model, "pretrained_cfg", None) or {}
        mean, std = pretrained_normalization(pretrained, in_chans) or (mean, std)
    # a source/target data pair trains a DomainAdaptationModule (with domain_adaptation=none too)
    module_class, domain_kwargs = build_domain(cfg, backbone.num_features, target_normalization)
    return module_class(
        backbone,
        head,
        num_classes,
        strategy,
        optimizer=instantiate_part(cfg.optimizer, "optimizer"),
        schedule=instantiate_part(cfg.scheduler, "scheduler"),
        label_smoothing=smoothing,
        mean=mean,
        std=std,
        extra=extra,
        batch_augment=batch_augment,
        regularizer=regularizer,
        loss=loss,
        task=task,
        **domain_kwargs,
    )


def uses_pretrained_statistics(cfg: DictConfig, strategy) -> bool:
    """Hub-pretrained weights set the input mean/std unless the data config gives them."""
    return (
        bool(cfg.backbone.get("pretrained"))
        and not strategy.reinit
        and cfg.data.get("mean") is None
    )


def build_regularizer(cfg: DictConfig, backbone, head, fisher_provider: Callable | None):
    """The ``regularization=`` penalty (L2-SP, EWC) anchored to the backbone as built, or None."""
    regularization = cfg.get("regularization") or {}
    if "_target_" not in regularization:
        return None
    factory = instantiate(regularization)
    kwargs = {}
    if "fisher_provider" in inspect.signature(factory.func).parameters:
        if getattr(backbone, "added", None):
            raise ConfigError(
                "regularization=ewc penalises moving the source weights, which this PEFT "
                "strategy keeps frozen, and has no source Fisher for the parameters it adds; use "
                "regularization=l2sp (it pulls them back towards their start) or none."
            )
        kwargs["fisher_provider"] = fisher_provider
    return factory(backbone.model, head, **kwargs)


def is_domain_pair(data_cfg: DictConfig) -> bool:
    return "source" in data_cfg and "target" in data_cfg


def build_domain(
    cfg: DictConfig, in_features: int, target_normalization: tuple | None = None
) -> tuple[type, dict]:
    """(module class, its extra arguments) for the config's data and ``domain_adaptation``."""
    da = cfg.get("domain_adaptation") or {}
    method = da.get("method", "none")
    if not is_domain_pair(cfg.data):
        if method != "none":
            raise ConfigError(
                f"domain_adaptation={method} needs a source and a target domain; choose a pair "
                "such as data=mnist_to_mnist_m, or domain_adaptation=none."
            )
        return TransferModule, {}
    target_labels = bool(cfg.data.get("target_labels", True))
    oracle = bool(da.get("oracle", False))
    if oracle and not target_labels:
        raise ConfigError(
            "The oracle picks a checkpoint by target validation accuracy, but the target has no "
            "labels (data.target_labels=false); set domain_adaptation.oracle=false."
        )
    alignment = instantiate(da.alignment)(in_features=in_features) if da.get("alignment") else None
    target_mean, target_std = target_normalization or (None, None)
    return DomainAdaptationModule, {
        "alignment": alignment,
        "target_labels": target_labels,
        "oracle": oracle,
        "target_mean": target_mean,
        "target_std": target_std,
        "target_bn": bool(da.get("target_bn", False)),
    }
