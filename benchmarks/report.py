"""The markdown table of a benchmark results dict (``outputs/bench/results.md``)."""

from __future__ import annotations


def _f(x, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def rows(results: dict) -> list[tuple[str, str, str, str]]:
    """(part, what was compared, measured, goal) per figure, for the parts that ran."""
    out = []
    if "overhead" in results:
        r = results["overhead"]
        lo, hi = r["ratio_ci"]
        spread = r["per_pair"]
        out.append(
            (
                "(a) overhead",
                f"median step: transferlab {1000 * r['transferlab_median_step_s']:.1f} ms / "
                f"plain loop {1000 * r['plain_median_step_s']:.1f} ms ({r['steps_per_arm']} steps "
                f"an arm, {r['epoch_pairs']} pairs of epochs; per-pair ratios {_f(spread['min'], 3)}"
                f"-{_f(spread['max'], 3)})",
                f"{_f(r['ratio'], 3)}x [95% CI {_f(lo, 3)}, {_f(hi, 3)}]",
                "95% CI within [0.97, 1.03]",
            )
        )
        out.append(own_time_row(r["own_time"]))
    if "own_time" in results:
        out.append(own_time_row(results["own_time"]))
    if "feature_cache" in results:
        r = results["feature_cache"]
        out.append(
            (
                "(b) feature cache",
                f"fit (10 epochs + validation + checkpoints): uncached {r['uncached']['fit_s']:.1f} s / "
                f"cached {r['cached']['fit_s']:.1f} s, its train + val feature pass included "
                f"(all feature passes, test too: {r['cached']['feature_pass_s']:.1f} s); "
                f"whole process {r['uncached']['wall_s']:.0f} / {r['cached']['wall_s']:.0f} s "
                f"({_f(r['speedup_wall'], 1)}x); largest test acc diff {r['acc_diff_points']:.2f} "
                f"points; fit ratio per pair {', '.join(_f(x, 1) for x in r['speedup_fit_per_pair'])}",
                f"{_f(r['speedup_fit'], 1)}x (median pair)",
                r["goal"],
            )
        )
        out += (
            []
            if "sweep_speedup" not in r
            else [
                (
                    "(b) 6-job head sweep",
                    f"uncached {r['sweep_uncached_s']:.0f} s / cached {r['sweep_cached_s']:.0f} s",
                    f"{_f(r['sweep_speedup'], 1)}x",
                    "k jobs ~ one backbone pass",
                )
            ]
        )
    if "memory" in results:
        r = results["memory"]
        for s in ("feature_extraction", "partial"):
            out.append(
                (
                    f"(c) {s} vs full",
                    f"peak {r[s]['peak_mib']:.1f} / {r['full']['peak_mib']:.1f} MiB; "
                    f"step time {_f(r[s]['step_time_vs_full'])}x",
                    f"{_f(r[s]['memory_vs_full'])}x memory",
                    r["goal"] if s == "feature_extraction" else "",
                )
            )
    if "data_wait" in results:
        r = results["data_wait"]
        for name, v in r.items():
            if isinstance(v, dict):
                out.append(
                    (
                        f"(d) data wait, {name}",
                        f"median step {1000 * v['median_step_s']:.1f} ms over {v['steps']} steps",
                        f"{100 * v['wait_share']:.2f}%",
                        "< 5%",
                    )
                )
    return out


def own_time_row(own: dict) -> tuple[str, str, str, str]:
    lo, hi = own["own_ms_ci"]
    return (
        "(a) framework's own time",
        f"median step on a small model: transferlab "
        f"{1000 * own['transferlab_median_step_s']:.2f} ms - plain loop "
        f"{1000 * own['plain_median_step_s']:.2f} ms ({own['steps_per_arm']} steps an arm; "
        f"load {own['load_avg_1min']['start']:.1f}-{own['load_avg_1min']['end']:.1f})",
        f"{_f(own['own_ms'])} ms/step [95% CI {_f(lo)}, {_f(hi)}]" + cpu_part(own) + floor(own),
        "<= 1 ms/step",
    )


def floor(own: dict) -> str:
    if "lightning_ms" not in own:
        return ""
    lo, hi = own["lightning_ms_ci"]
    return f"; of it Lightning's bare loop {_f(own['lightning_ms'])} ms/step [{_f(lo)}, {_f(hi)}]"


def cpu_part(own: dict) -> str:
    if "own_cpu_ms" not in own:
        return ""
    lo, hi = own["own_cpu_ms_ci"]
    return f"; CPU time {_f(own['own_cpu_ms'])} ms/step [{_f(lo)}, {_f(hi)}]"


def markdown(results: dict) -> str:
    m = results["machine"]
    head = (
        f"Machine: {m['cpu_cores']} CPU cores, {m['torch_threads']} torch threads, GPU: "
        f"{m['gpu'] or 'none'}; load average at start {m['load_avg_1min_at_start']:.1f}; "
        f"torch {m['torch']}.\n\n"
    )
    lines = ["| part | compared | measured | goal |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(r)} |" for r in rows(results)]
    return head + "\n".join(lines) + "\n"
