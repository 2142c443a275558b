"""report.md for a sweep: arms with mean ± std, the best arm marked, failures, sample efficiency,
main effects."""

from __future__ import annotations

from pathlib import Path

from transferlab.report.efficiency import SCRATCH, negative_transfer, sample_efficiency
from transferlab.report.factors import (
    HEATMAP_PNG,
    MAIN_EFFECTS_PNG,
    Level,
    effect_range,
    main_effects,
    strongest,
)
from transferlab.report.labels import DEFAULT, abbreviations
from transferlab.report.runs import (
    Arm,
    Run,
    arm_keys,
    best_arm,
    collect_runs,
    summarise,
    varying_keys,
    write_results_csv,
)


def fmt_stat(stat: tuple[float, float] | None, digits: int = 3) -> str:
    if stat is None:
        return "–"
    return f"{stat[0]:.{digits}f} ± {stat[1]:.{digits}f}"


def arm_table(arms: list[Arm], keys: list[str], metric: str) -> list[str]:
    """Markdown rows: one per arm, the ranking metric first, the best arm marked."""
    best = best_arm(arms, metric)
    metrics = [metric, *(m for m in ("val/acc", "test/acc") if m != metric)]
    head = [*(keys or ["config"]), "runs", *metrics, "wall time (s)", "trainable params", ""]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm in arms:
        labels = [arm.choices[k] for k in keys] if keys else ["all runs"]
        params = arm.stats.get("params/trainable")
        cells = [
            *labels,
            str(len(arm.runs)),
            *(fmt_stat(arm.stats.get(m)) for m in metrics),
            fmt_stat(arm.stats.get("time/wall_s"), 1),
            f"{params[0]:,.0f}" if params else "–",
            "**best**" if arm is best else "",
        ]
        if arm is best:
            cells[len(labels) + 1] = f"**{cells[len(labels) + 1]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def failure_table(runs: list[Run]) -> list[str]:
    """Markdown rows: each failed run, the overrides that set it apart, and the reason."""
    failed = [r for r in runs if r.failed]
    if not failed:
        return ["No run failed."]
    keys = varying_keys(runs)
    lines = ["| job | overrides | error |", "|---|---|---|"]
    for r in failed:
        overrides = " ".join(f"{k}={r.overrides.get(k, '')}" for k in keys)
        message = " ".join(str(r.failure["message"]).split()).replace("|", "\\|")
        lines.append(f"| {r.job} | `{overrides}` | {r.failure['error']}: {message} |")
    return lines


def efficiency_section(curves, metric: str) -> list[str]:
    if SCRATCH not in curves or len(curves) < 2:
        return []
    lines = ["", "## Sample efficiency", "", f"E(n): {metric} against labelled images per class."]
    lines.append("")
    negatives = negative_transfer(curves)
    if not negatives:
        lines.append("No negative transfer: every transfer arm beats scratch at every n.")
    for strategy, n, mean, base in negatives:
        n_text = "all" if n == "null" else n
        lines.append(
            f"- **negative transfer**: `{strategy}` at n={n_text} "
            f"({mean:.3f} vs scratch {base:.3f})"
        )
    return lines


def effects_section(effects: dict[str, list[Level]], metric: str, plots: list[Path]) -> list[str]:
    """Main effects in text: each factor's range, then one row per level; the two pictures."""
    if not effects:
        return []
    ranked = strongest(effects, count=len(effects))
    ranges = ", ".join(f"`{k}` {effect_range(effects[k]):.3f}" for k in ranked)
    lines = [
        "",
        "## Main effects",
        "",
        f"Each level's `{metric}`: mean ± sample std over all finished runs at that level, "
        f"whatever the other factors and the seed. Range of level means: {ranges}. "
        f"The heatmap crosses the two strongest factors, `{ranked[0]}` and `{ranked[1]}`.",
        "",
        "| factor | level | mean ± std | runs |",
        "|---|---|---|---|",
    ]
    for factor, levels in effects.items():
        for level in levels:
            stat = fmt_stat((level.mean, level.std))
            lines.append(f"| {factor} | {level.value or DEFAULT} | {stat} | {level.n} |")
    pictures = [p for p in plots if p.name in (MAIN_EFFECTS_PNG, HEATMAP_PNG)]
    return [*lines, "", *(f"![{p.stem}]({p.name})" for p in pictures)]


def abbreviation_note(arms: list[Arm]) -> list[str]:
    """What the pictures' shortened values stand for (none when nothing was shortened)."""
    short = abbreviations(arms)
    if not short:
        return []
    names = ", ".join(f"`{s}` = {value}" for s, value in short.items())
    return ["", f"The pictures shorten long values: {names}."]


def plots_section(plots: list[Path]) -> list[str]:
    """The pictures that the main-effects section does not show."""
    plots = [p for p in plots if p.name not in (MAIN_EFFECTS_PNG, HEATMAP_PNG)]
    if not plots:
        return []
    return ["", "## Plots", "", *(f"![{p.stem}]({p.name})" for p in plots)]


def render(
    sweep_dir: Path,
    runs: list[Run],
    metric: str,
    plots: list[Path],
    effects: dict[str, list[Level]],
) -> str:
    keys = arm_keys(runs)
    arms = summarise(runs, keys)
    n_failed = sum(r.failed for r in runs)
    lines = [
        f"# Sweep report: {sweep_dir.name}",
        "",
        f"{len(runs)} runs: {len(runs) - n_failed} finished, {n_failed} failed. "
        f"Each row is one configuration; values are mean ± sample std over its runs (seeds). "
        f"The row with the best mean `{metric}` is bold.",
        "",
        *arm_table(arms, keys, metric),
        *abbreviation_note(arms),
        "",
        "## Failed runs",
        "",
        *failure_table(runs),
        *efficiency_section(sample_efficiency(arms, metric), metric),
        *effects_section(effects, metric, plots),
        *plots_section(plots),
    ]
    return "\n".join(lines) + "\n"


def write_report(sweep_dir: Path, metric: str = "test/acc", out: Path | None = None) -> list[Path]:
    """Write results.csv, the plots and report.md for ``sweep_dir``; return their paths."""
    from transferlab.report.factor_plots import save_factor_plots
    from transferlab.report.plots import save_plots

    runs = collect_runs(sweep_dir)
    out = out or sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    write_results_csv(runs, out / "results.csv")
    keys = arm_keys(runs)
    arms = summarise(runs, keys)
    effects = main_effects(runs, keys, metric)
    plots = save_plots(runs, arms, sample_efficiency(arms, metric), metric, out)
    plots += save_factor_plots(runs, effects, metric, out)
    (out / "report.md").write_text(render(sweep_dir, runs, metric, plots, effects))
    return [out / "results.csv", out / "report.md", *plots]
