"""Short labels for sweep pictures: only the choices that vary, long values abbreviated.

A configuration reads ``resnet18 · full · none · cosine`` (its values in the order of the sweep's
keys, which the picture names once) instead of ``backbone=resnet18,strategy=full,...``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from transferlab.report.runs import Arm

SEPARATOR = " · "
LONG_VALUE = 10  # characters; values longer than this are abbreviated
WORD = 4  # letters kept of each longer word of an abbreviated value
LONG_WORD = re.compile(f"[A-Za-z]{{{WORD + 1},}}")
DEFAULT = "default"  # the level of runs that did not set the key


def abbreviate(value: str) -> str:
    """``feature_extraction`` -> ``feat_extr``, ``efficientnet_b0`` -> ``effi_b0``.

    Digits and separators stay, so ``vit_tiny_patch16_224`` keeps its numbers.
    """
    if not value:
        return DEFAULT
    if len(value) <= LONG_VALUE:
        return value
    return LONG_WORD.sub(lambda m: m.group()[:WORD], value)


def short_levels(levels: Iterable[str]) -> dict[str, str]:
    """{value: short form} for one key's values; the full values where shortening merges two."""
    levels = list(dict.fromkeys(levels))
    shorts = {v: abbreviate(v) for v in levels}
    if len(set(shorts.values())) < len(shorts):
        return {v: v or DEFAULT for v in levels}
    return shorts


def arm_shorts(arms: list[Arm]) -> dict[str, dict[str, str]]:
    """{key: {value: short form}} over every key that picks an arm."""
    keys = list(arms[0].choices) if arms else []
    return {k: short_levels(a.choices[k] for a in arms) for k in keys}


def config_labels(arms: list[Arm]) -> list[str]:
    """One short label per arm: its values joined in key order (see :func:`keys_title`)."""
    shorts = arm_shorts(arms)
    return [
        SEPARATOR.join(shorts[k][v] for k, v in arm.choices.items()) or "all runs" for arm in arms
    ]


def keys_title(arms: list[Arm]) -> str:
    """The keys whose values make up a :func:`config_labels` label, in their order."""
    return SEPARATOR.join(arms[0].choices) if arms else ""


def abbreviations(arms: list[Arm]) -> dict[str, str]:
    """{short form: full value} for every value that the pictures abbreviate."""
    return {
        short: value
        for by_value in arm_shorts(arms).values()
        for value, short in by_value.items()
        if value and short != value
    }
