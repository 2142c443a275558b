"""``transferlab-report DIR``: results.csv, report.md and plots for a multirun dir."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from transferlab.errors import ConfigError
from transferlab.report.pages import write_report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="transferlab-report",
        description="Summarise a multirun dir: results.csv, report.md and plots.",
    )
    parser.add_argument("sweep_dir", type=Path, help="the dir of a `-m` sweep")
    parser.add_argument("--metric", default="test/acc", help="metric to rank arms by")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: DIR)")
    args = parser.parse_args(argv)
    try:
        written = write_report(args.sweep_dir, args.metric, args.out)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
