"""``chexpert demo [OUT]`` (or ``python -m chexpert.demo``): the whole job on a generated look-alike release.

synth -> info -> verify --decode -> prepare -> train (the ``demo`` recipe: a small CNN on the CPU,
about a minute) -> predict the validation studies -> evaluate -> ``OUT/report.html``. Every step
is the call a user makes on the real data; the look-alike's pictures are drawn from their labels,
so the model has something real to learn and its AUROCs mean something.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path

from chexpert import schema

__all__ = ["run_demo", "main"]


def _step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def run_demo(
    out: str | os.PathLike[str] = "demo",
    *,
    patients: int = 600,
    valid_patients: int = 200,
    steps: int | None = None,
    size: int = 64,
    seed: int = 0,
    bootstrap: int = 1000,
    workers: int = 2,
) -> Path:
    """Run the demo into ``out`` and return the path of its ``report.html``; reuses a release already there.

    Not run as a doctest (minutes: it synthesizes, prepares, trains and evaluates; tests/test_demo.py runs it small):

    >>> run_demo("demo")  # doctest: +SKIP
    PosixPath('demo/report.html')
    """
    from chexpert.cli import main as cli  # the commands a user runs; cli imports this module lazily
    from chexpert.evaluate import UndefinedMetricWarning, evaluate
    from chexpert.progress import Reporter
    from chexpert.release import SYNTH_MARKER, open_release
    from chexpert.report import write_report
    from chexpert.store import prepare
    from chexpert.synth import synthesize
    from chexpert.train import get_recipe, predict, train
    from chexpert.validation import check_int

    check_int("patients", patients, low=1)
    check_int("valid_patients", valid_patients, low=1, high=200)
    started = time.perf_counter()
    out = Path(out)
    root = out / "CheXpert-v1.0-small"
    _step(f"synth: a look-alike CheXpert-v1.0-small in {root}")
    if (root / SYNTH_MARKER).exists():  # written by synth, so ours to reuse
        print("(already there; delete it to make a new one)")
    else:
        synthesize(out, release="small", patients=patients, valid_patients=valid_patients, seed=seed, workers=workers)
        print(root)

    _step("chexpert info")
    cli(["info", str(root)])

    _step("chexpert verify --decode")
    if cli(["verify", str(root), "--decode", "--workers", str(workers)]) != 0:
        raise SystemExit("verify found problems; stopping")

    _step(f"chexpert prepare --size {size} (every split, padded to square)")
    release = open_release(root)
    store = prepare(release, out / f"store-{size}", size=size, resize="pad", workers=workers)
    print(store)

    recipe = get_recipe("demo").replace(size=size, seed=seed)
    if steps is not None:
        recipe = recipe.replace(
            max_steps=steps, checkpoint_every=max(1, min(recipe.checkpoint_every, -(-steps // 4))), log_every=max(1, min(recipe.log_every, steps // 10 or 1))
        )
    _step(f"chexpert train: {recipe.model} on {size}x{size}, policy {recipe.policy}, batch {recipe.batch_size}, Adam at {recipe.lr:g}")
    run = train(store, out / "run", recipe, workers=0, device="cpu", overwrite=True, progress=Reporter(quiet=False))

    _step("chexpert predict: the validation studies, averaged over the kept checkpoints")
    predictions = predict(run, store, split="valid", device="cpu")
    images_csv, studies_csv = predictions.write(out / "predictions.csv")
    print(f"{images_csv}: {len(predictions.images):,} images; {studies_csv}: {len(predictions.studies):,} studies")

    _step("chexpert evaluate: per study, with bootstrap intervals")
    cli(["evaluate", "--predictions", str(images_csv), "--truth", str(root / "valid.csv"), "--bootstrap", str(bootstrap)])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # printed by the command above
        result = evaluate(images_csv, root / "valid.csv", bootstrap=bootstrap)

    _step("report")
    seconds = time.perf_counter() - started
    report = write_report(
        out / "report.html",
        store,
        release=release,
        run=run,
        evaluation=result,
        title="chexpert demo: a look-alike CheXpert, a baseline, its scores",
        subtitle=f"{root} · synthetic look-alike (no patient data) · generated, verified, prepared, trained and scored in {seconds:.0f} s",
        notes=[
            "The look-alike's pictures are drawn from their labels (an enlarged heart for Cardiomegaly, fluid at the "
            "costophrenic angle for Pleural Effusion, a tube for Support Devices, ...), so these AUROCs measure how well "
            "a small network learns drawn findings in a minute on a CPU, not anything about real radiographs.",
            f"Reproduce: chexpert demo {out}",
        ],
    )
    print(f"{report}  (open it in a browser)")
    task_line = ", ".join(f"{t} {result.table.loc[t, 'auroc']:.3f}" for t in schema.COMPETITION_TASKS if t in result.table.index)
    print(f"\nDone in {time.perf_counter() - started:.0f} s. Mean AUROC of the 5 competition tasks {result.mean_auroc:.3f} ({task_line}).")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m chexpert.demo [OUT]``: the same as ``chexpert demo``.

    Not run as a doctest (minutes; see :func:`run_demo`):

    >>> main(["demo"])  # doctest: +SKIP
    0
    """
    from chexpert.cli import main as cli  # the commands a user runs; cli imports this module lazily

    parser = argparse.ArgumentParser(prog="python -m chexpert.demo", description=__doc__)
    parser.add_argument("out", nargs="?", default="demo")
    args, rest = parser.parse_known_args(argv)
    return cli(["demo", args.out, *rest])
