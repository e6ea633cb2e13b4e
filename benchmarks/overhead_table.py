"""One table of GIPO's cost per adapter, collected from the three overhead benchmarks' CSVs.

Each ratio was measured against the stock algorithm in the same run by its own script
(`torchrl_loss_overhead.py`, `rllib_iteration_overhead.py`, `trl_step_overhead.py`); this
script only gathers them into `docs/benchmarks/overhead.{csv,md}`:

```
python -m benchmarks.overhead_table
```
"""

from __future__ import annotations

import csv

from benchmarks.report import DOCS, write_report

SOURCES = {  # adapter: (csv stem, stock name, column naming the measurement, its unit)
    "TorchRL `GIPOLoss`": ("torchrl_loss_overhead", "ClipPPOLoss", "batch", "forward+backward, batch {}"),
    "RLlib `GIPO`": ("rllib_iteration_overhead", "PPO", "measure", "{}"),
    "TRL `GIPOTrainer`": ("trl_step_overhead", "GRPOTrainer", "measure", "{}"),
}


def main() -> None:
    rows = []
    for adapter, (stem, stock, key, what) in SOURCES.items():
        with open(DOCS / f"{stem}.csv") as f:
            for row in csv.DictReader(f):
                rows.append({"adapter": adapter, "stock": stock, "measure": what.format(row[key]),
                             "ratio": float(row["ratio"]), "source": f"[{stem}]({stem}.md)"})  # fmt: skip
    write_report(
        "overhead",
        "GIPO's overhead per adapter",
        "GIPO time (or memory) divided by the stock algorithm's, each measured in one run on the same "
        "machine (2 CPU cores, no GPU) by the script on its source page; collected by "
        "`python -m benchmarks.overhead_table`. Ratios near 1 mean the trust weight and the diagnostics "
        "cost little next to the model; the fixed ~0.5–1 ms per call shows most at small batches.",
        rows,
        {"adapter": "adapter", "stock": "against", "measure": "measure", "ratio": "GIPO / stock", "source": "source"},
        digits=2,
    )


if __name__ == "__main__":
    main()
