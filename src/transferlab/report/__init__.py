"""Sweep reports: a multirun dir -> results.csv, report.md and plots (``transferlab-report DIR``).

- :mod:`~transferlab.report.runs` reads the job dirs and groups runs into arms (mean ± std).
- :mod:`~transferlab.report.efficiency` turns an n-per-class sweep into E(n) curves.
- :mod:`~transferlab.report.factors` gives a factorial sweep's main effects per factor level.
- :mod:`~transferlab.report.pages`, :mod:`~transferlab.report.plots` and
  :mod:`~transferlab.report.factor_plots` write the page and PNGs, labelled the short way of
  :mod:`~transferlab.report.labels`.
"""

from transferlab.report.cli import main
from transferlab.report.pages import write_report
from transferlab.report.runs import arm_keys, collect_runs, summarise

__all__ = ["arm_keys", "collect_runs", "main", "summarise", "write_report"]
