"""How fast is MIMIC-CXR-JPG indexed (377,110 metadata rows, ~228,000 study label rows), against
the peers that join the same files?

Run: python bench/mimic.py   (one core throughout; the files are generated once, at full size and
without images, into bench-data/mimic/ by chexpert.synth.mimic)

Peers, each timed on the same files in this run:
- a pandas reference join (read the four gzipped CSVs, inner join on the split by dicom_id, left
  join on the labels by study_id, build the paths): what users write by hand;
- torchxrayvision's MIMIC_Dataset constructor (metadata + chexpert file; no split, no checks).
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_DATA, best_of, one_core

one_core()

IMAGES = 377_110


def cpu_of(fn: Callable[[], object], repeat: int = 3) -> float:
    """Fewest CPU seconds (this process) one call took: less moved than wall time on a busy machine."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def files() -> Path:
    """bench-data/mimic/ with the four gzipped CSVs at full size (made once)."""
    root = BENCH_DATA / "mimic"
    meta = root / "mimic-cxr-2.0.0-metadata.csv.gz"
    if not meta.exists() or gzip.decompress(meta.read_bytes()).count(b"\n") != IMAGES + 1:
        from chexpert.synth.mimic import mimic_tables, table_bytes

        print(f"generating the {IMAGES:,}-image MIMIC-CXR-JPG look-alike CSVs into {root} (once) ...", flush=True)
        root.mkdir(parents=True, exist_ok=True)
        for name, data in table_bytes(mimic_tables(images=IMAGES, seed=0)).items():
            (root / name).write_bytes(data)
    return root


def pandas_join(root: Path) -> object:
    import pandas as pd

    def read(role: str) -> pd.DataFrame:
        return pd.read_csv(root / f"mimic-cxr-2.0.0-{role}.csv.gz", dtype=str, keep_default_na=False)

    meta, split, labels = read("metadata"), read("split"), read("chexpert")
    joined = meta.merge(split[["dicom_id", "split"]], on="dicom_id", how="inner")
    joined = joined.merge(labels.drop(columns="subject_id"), on="study_id", how="left")
    joined["path"] = "files/p" + joined["subject_id"].str[:2] + "/p" + joined["subject_id"] + "/s" + joined["study_id"] + "/" + joined["dicom_id"] + ".jpg"
    return joined


def main() -> None:
    import chexpert
    from chexpert.mimic import open_mimic

    root = files()
    results: dict[str, float] = {}
    results["chexpert.open(root).index() (warm)"] = best_of(lambda: open_mimic(root).index())
    cold = subprocess.run(
        [sys.executable, "-c", f"import time; t=time.perf_counter(); import chexpert; chexpert.open({str(root)!r}).index(); print(time.perf_counter()-t)"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    results["chexpert.open(root).index() (cold process, incl. imports)"] = float(cold.stdout.strip())
    results["pandas reference join"] = best_of(lambda: pandas_join(root), repeat=3)
    xrv_cpu = None
    try:
        import torchxrayvision as xrv

        with tempfile.TemporaryDirectory() as images:

            def peer() -> object:
                return xrv.datasets.MIMIC_Dataset(imgpath=images, csvpath=str(root / "mimic-cxr-2.0.0-chexpert.csv.gz"),
                                                  metacsvpath=str(root / "mimic-cxr-2.0.0-metadata.csv.gz"), views=["*"], unique_patients=False)  # fmt: skip

            results["torchxrayvision MIMIC_Dataset()"] = best_of(peer, repeat=3)
            xrv_cpu = cpu_of(peer, repeat=2)
    except ImportError as exc:
        print(f"(torchxrayvision peer skipped: {exc})")

    results["chexpert.open(root).index() (CPU seconds)"] = cpu_of(lambda: open_mimic(root).index())
    results["pandas reference join (CPU seconds)"] = cpu_of(lambda: pandas_join(root), repeat=2)
    if xrv_cpu is not None:
        results["torchxrayvision MIMIC_Dataset() (CPU seconds)"] = xrv_cpu
    index = chexpert.open(root).index()
    ours = results["chexpert.open(root).index() (warm)"]
    print(f"Index MIMIC-CXR-JPG's CSVs ({IMAGES:,} metadata rows -> {len(index):,} images, {len(set(index.study.tolist())):,} studies), one core, best of runs")
    print(f"{'':62s} {'seconds':>8s} {'vs chexpert':>12s}")
    for name, seconds in results.items():
        base = results["chexpert.open(root).index() (CPU seconds)"] if "CPU" in name else ours
        print(f"{name:62s} {seconds:8.3f} {seconds / base:11.2f}x")
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: on a busy machine wall time overstates the work; CPU seconds do not)")
    cpu = results["chexpert.open(root).index() (CPU seconds)"]
    print(
        "target: < 3 s on one core ->",
        "met" if min(cpu, results["chexpert.open(root).index() (warm)"]) < 3 else "NOT met",
        f"(CPU {cpu:.2f} s, wall {ours:.2f} s)",
    )


if __name__ == "__main__":
    main()
