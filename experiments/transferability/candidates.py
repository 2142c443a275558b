"""Print the evidence candidate set as ``name|overrides`` lines for run.sh."""

from transferlab import compose

for c in compose(["candidate_set=evidence"], "rank").candidates:
    print(f"{c.name}|{' '.join(c.overrides)}")
