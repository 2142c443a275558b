"""Sweep reports: a multirun dir -> results.csv, report.md and plots (``transferlab-report DIR``).

- :mod:`~transferlab.report.runs` reads the job dirs and groups runs into arms (mean ± std).
- :mod:`~transferlab.report.efficiency` turns an n-per-class sweep into E(n) curves.
- :mod:`~transferlab.report.pages` and :mod:`~transferlab.report.plots` write the page and PNGs.
"""

from transferlab.report.cli import main
from transferlab.report.pages import write_report
from transferlab.report.runs import arm_keys, collect_runs, summarise

__all__ = ["arm_keys", "collect_runs", "main", "summarise", "write_report"]
