"""Is ``predict`` on a folder of JPEGs (decoded and resized on the fly) as fast as ``predict`` on the prepared store?

Run: python bench/predict.py                  (1,000 small JPEGs, the demo's tiny-cnn at 64 px; about 3 minutes on 2 cores)
     python bench/predict.py --model densenet121 --size 320 --device cuda

Both read the same 1,000 small-release look-alike JPEGs (bench-data/predict/, made once by
chexpert.synth; the folder holds hard links to exactly the store's images) with the same run (random weights: the
rate does not depend on them) and batch size:

- store: ``predict(run, store)``: the images prepared once at ``--size`` and memory-mapped, the
  rate of inference alone;
- folder: ``predict(run, folder)``: every file read, decoded (libjpeg-turbo with DCT-domain
  reduction) and resized (INTER_AREA) as ``prepare`` does, in ``--workers`` loader processes.

It prints images per second, best of ``--repeat``, and folder / store (the target: >= 0.8).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
import torch

IMAGES = 1_000


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the DataLoader's workers end with each pass)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def main() -> int:
    from chexpert.release import open_release
    from chexpert.store import prepare
    from chexpert.train import Recipe, predict, train

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-cnn")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="loader processes for the folder (each measured)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    root = _common.look_alike("predict", IMAGES, 350)
    release = open_release(root)
    index = release.index("train")
    store = prepare(release, _common.BENCH_DATA / "stores" / f"predict-{args.size}", size=args.size, index=index, workers=os.cpu_count() or 1)
    folder = _common.BENCH_DATA / "predict" / "folder"
    for path in index.path:  # exactly the store's images: hard links to the release's files
        target = folder / str(path).split("/", 1)[1]
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(release.locate(str(path)), target)
    files = sum(1 for _ in folder.rglob("*.jpg"))
    with tempfile.TemporaryDirectory() as tmp:
        recipe = Recipe(model=args.model, weights="none", channels=3 if args.model != "tiny-cnn" else 1, size=args.size, batch_size=8,
                        max_steps=1, checkpoint_every=1, keep_best=1)  # fmt: skip
        run = train(store, Path(tmp) / "run", recipe, validate=False, device=args.device)
        device = "GPU " + torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "CPU"
        print(f"{device}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), {args.model} at "
              f"{args.size}x{args.size}, batch {args.batch_size}; {len(store.index):,} images in the store, {files:,} JPEGs in {folder}")  # fmt: skip
        if not torch.cuda.is_available() or args.device == "cpu":
            print("No GPU here: CPU figures.")

        def from_store() -> int:
            return len(predict(run, store, split="train", batch_size=args.batch_size, device=args.device).images)

        def from_folder(workers: int) -> Callable[[], int]:
            return lambda: len(predict(run, folder, batch_size=args.batch_size, workers=workers, device=args.device).images)

        candidates: list[tuple[str, Callable[[], int]]] = [("store (prepared, memory-mapped)", from_store)]
        candidates += [(f"folder of JPEGs, {w} loader workers", from_folder(w)) for w in args.workers]
        best = dict.fromkeys((name for name, _ in candidates), 0.0)
        best_cpu = dict.fromkeys((name for name, _ in candidates), 0.0)
        for _ in range(args.repeat):  # interleaved: a busy machine slows every candidate alike
            for name, fn in candidates:
                wall, cpu = time.perf_counter(), _cpu_seconds()
                count = fn()
                wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
                best[name] = max(best[name], count / wall)
                best_cpu[name] = max(best_cpu[name], count / cpu)
        rows = list(best.items())
        _common.table("predict: images per second of wall time (decode included for the folder)", rows, {"store": rows[0][1]})
        # CPU seconds (this process and its loader workers) per image: what the work costs, whatever else runs on the machine.
        cpu_rows = list(best_cpu.items())
        _common.table("predict: images per CPU second (process + loader workers)", cpu_rows, {"store": cpu_rows[0][1]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
