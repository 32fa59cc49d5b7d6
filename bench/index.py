"""How fast is the real train.csv (223,414 rows) indexed, against the peers' CSV loading?

Run: python bench/index.py   (needs torchxrayvision for the real CSV; one core is used throughout)

Peers, each timed on the same file in this run:
- pandas.read_csv alone (what every repository starts with; no validation, no typed columns);
- torchxrayvision's CheX_Dataset constructor (all views, all patients; the images are not read).
"""

from __future__ import annotations

import importlib.resources
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, one_core

one_core()


def main() -> None:
    import pandas as pd

    import chexpert

    csv = Path(str(importlib.resources.files("torchxrayvision") / "data" / "chexpert_train.csv.gz"))
    results: dict[str, float] = {}
    results["chexpert.read_csv (warm)"] = best_of(lambda: chexpert.read_csv(csv))
    cold = subprocess.run(
        [sys.executable, "-c", f"import time; t=time.perf_counter(); import chexpert; chexpert.read_csv({str(csv)!r}); print(time.perf_counter()-t)"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    results["chexpert.read_csv (cold process, incl. imports)"] = float(cold.stdout.strip())
    results["pandas.read_csv only"] = best_of(lambda: pd.read_csv(csv))
    try:
        import torchxrayvision as xrv

        with tempfile.TemporaryDirectory() as images:
            results["torchxrayvision CheX_Dataset()"] = best_of(
                lambda: xrv.datasets.CheX_Dataset(imgpath=images, csvpath=str(csv), views=["PA", "AP", "L", "LL", "RL"], unique_patients=False),
                repeat=3,
            )
    except ImportError as exc:
        print(f"(torchxrayvision peer skipped: {exc})")

    ours = results["chexpert.read_csv (warm)"]
    print(f"Index the real train.csv ({len(chexpert.read_csv(csv)):,} rows), one core, best of runs")
    print(f"{'':52s} {'seconds':>8s} {'vs chexpert':>12s}")
    for name, seconds in results.items():
        print(f"{name:52s} {seconds:8.3f} {seconds / ours:11.2f}x")
    print("target: < 2 s on one core ->", "met" if results["chexpert.read_csv (cold process, incl. imports)"] < 2 else "NOT met")


if __name__ == "__main__":
    main()
