"""Under torchrun, should every rank score the whole validation split, or its shard with the scores gathered back?

Run (CPU, 16 cores, ~2 min):  python bench/ddp_scoring.py
Run (CPU, small):              python bench/ddp_scoring.py --worlds 1 2 --images 300 --model tiny-cnn --size 64

For each world size, in one torchrun (gloo on the CPU; each rank gets cores / world threads, the
CPU's stand-in for one GPU per rank), ``chexpert.train.loop.score_rows`` scores the valid split of
a look-alike store both ways, alternating, ``--repeats`` times after one warm-up each:
- whole: every rank scores every row itself (sharding explicitly off), no communication;
- shard: each rank scores its share and the shares are gathered (all_gather_object) and put back
  in row order on every rank.
It prints the median seconds of each (the slowest rank's, since every rank waits for it) and the
ratio whole / shard; both must give the same scores, which it checks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _worker(args: argparse.Namespace) -> None:
    import torch
    import torch.distributed

    from chexpert.store import open_store
    from chexpert.train.device import resolve_placement
    from chexpert.train.distributed import Distributed
    from chexpert.train.inference import input_transform
    from chexpert.train.loop import head_of, score_rows
    from chexpert.train.models import build_model
    from chexpert.train.recipe import Recipe

    placement = resolve_placement("cpu", "auto", "auto")
    dist = Distributed(placement.device)
    store = open_store(args.store)
    rows = np.flatnonzero(store.index.split == 1)
    recipe = Recipe(model=args.model, weights="none", channels=1, size=args.size)
    head = head_of("u-ones")
    torch.manual_seed(0)
    model = build_model(args.model, outputs=head.outputs, channels=1, weights="none").eval()
    transform = input_transform(recipe, train=False)
    times: dict[str, list[float]] = {"whole": [], "shard": []}
    results = {}
    for repeat in range(args.repeats + 1):
        for mode in ("whole", "shard"):
            dist.barrier()
            start = time.perf_counter()
            results[mode] = score_rows([model], head, store, rows, placement, transform, dist, shard=mode == "shard")
            seconds = max(dist.gather(time.perf_counter() - start))
            if repeat:
                times[mode].append(seconds)
    assert np.allclose(results["whole"], results["shard"], atol=1e-5), "the two ways disagree"
    if dist.main:
        print(json.dumps({"world": dist.world_size, "rows": len(rows), **{k: statistics.median(v) for k, v in times.items()}}))
    dist.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--images", type=int, default=240, help="about this many validation images (at most ~250, the look-alike's 200 patients)")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return

    from chexpert.store import prepare
    from chexpert.synth import synthesize

    with tempfile.TemporaryDirectory() as tmp:
        release = synthesize(Path(tmp) / "release", patients=2, valid_patients=min(200, max(2, args.images * 10 // 12)), seed=0, workers=args.cores)
        store = prepare(release, Path(tmp) / "store", size=args.size, workers=args.cores)
        print(f"{args.model} at {args.size} px, {int((store.index.split == 1).sum())} validation images, {args.cores} cores")
        print(f"{'ranks':>5} {'whole s':>8} {'shard s':>8} {'whole/shard':>11}")
        for world in args.worlds:
            threads = str(max(1, args.cores // world))
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}", __file__, "--worker",
                       "--store", str(store.path), "--model", args.model, "--size", str(args.size), "--repeats", str(args.repeats)]  # fmt: skip
            env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
            result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
            if result.returncode != 0:
                sys.exit(result.stderr[-3000:])
            row = json.loads(result.stdout.strip().splitlines()[-1])
            print(f"{world:>5} {row['whole']:>8.3f} {row['shard']:>8.3f} {row['whole'] / row['shard']:>11.2f}")


if __name__ == "__main__":
    main()
