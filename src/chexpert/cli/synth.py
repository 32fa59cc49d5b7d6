"""``chexpert synth``: write a look-alike CheXpert release."""

from __future__ import annotations

import argparse
import sys

from chexpert import synth
from chexpert.cli._common import non_negative_int, path_name, positive_int
from chexpert.errors import InvalidArgumentError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``synth`` command."""
    p = subparsers.add_parser(
        "synth",
        help="write a look-alike release (real format and statistics, synthetic pictures)",
        description="Write a look-alike CheXpert release into OUT: exact CSV headers and spellings, "
        "the path scheme, baseline grayscale JPEGs whose content follows the labels. Prints the path "
        "to give to the other commands.",
    )
    p.add_argument("out", type=path_name, metavar="OUT", help="folder to write into (created if missing)")
    p.add_argument(
        "--release",
        choices=(*synth.RELEASES, "plus", "mimic"),
        default="small",
        help="small (320-pixel JPEGs, ~45 KB), full (2000-2900 pixels, ~1.9 MB), test (the test set's "
        "labels and radiologists with a CheXlocalize look-alike: images, masks) or plus (CheXpert Plus: "
        "report text, label files, RadGraph-XL, PNG chunk zips, DICOMs, and the small release it joins to) or mimic "
        "(MIMIC-CXR-JPG: gzipped CSVs, JPEGs by dicom_id, reports zip, planted quirks); default small",
    )
    p.add_argument("--patients", type=positive_int, default=100, help="training patients; test patients with --release test (default 100)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    p.add_argument(
        "--layout",
        choices=(*synth.LAYOUTS, "mirror"),
        default="folder",
        help="folder, one zip, or the Stanford AIMI batch zips (full only); with --release plus: folder (the PNG "
        "chunk zips and DICOM/ as Stanford AIMI ships them) or mirror (the hosted mirror's PNG_train/, PNG_valid/, "
        "DICOM_train/, DICOM_valid/ of single files); default folder",
    )
    p.add_argument("--valid-patients", type=non_negative_int, default=None, help="validation patients (default max(2, patients // 50))")
    p.add_argument("--test-patients", type=non_negative_int, default=0, help="test-set patients (default 0: no test set)")
    p.add_argument("--workers", type=positive_int, default=1, help="processes drawing images (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace a release already in OUT")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``chexpert synth`` with parsed arguments; print the resulting path."""
    import warnings

    from chexpert.progress import shown
    from chexpert.synth.place import LeftoverWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LeftoverWarning)
        code = _run(args)
    for warning in caught:
        if issubclass(warning.category, LeftoverWarning):
            print(f"chexpert synth: warning: {shown(warning.message)}", file=sys.stderr)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return code


def _run(args: argparse.Namespace) -> int:
    if args.release == "plus":
        from chexpert.synth.plus import synthesize_plus

        if args.layout not in ("folder", "mirror") or args.test_patients:
            raise InvalidArgumentError("--release plus writes a Plus folder: --layout folder or mirror, and no --test-patients")
        print(synthesize_plus(args.out, patients=args.patients, seed=args.seed, valid_patients=args.valid_patients,
                              workers=args.workers, overwrite=args.overwrite, layout="mirror" if args.layout == "mirror" else "aimi"))  # fmt: skip
        return 0
    if args.layout == "mirror":
        raise InvalidArgumentError("--layout mirror is the hosted mirror's layout of CheXpert Plus: use it with --release plus")
    if args.release == "mimic":
        from chexpert.synth.mimic import synthesize_mimic

        if args.layout != "folder":
            raise InvalidArgumentError("--release mimic writes MIMIC-CXR-JPG's folder; --layout does not apply")
        print(synthesize_mimic(args.out, patients=args.patients, seed=args.seed, valid_patients=args.valid_patients,
                               test_patients=args.test_patients or None, workers=args.workers, overwrite=args.overwrite))  # fmt: skip
        return 0
    kwargs = dict(
        release=args.release,
        patients=args.patients,
        seed=args.seed,
        layout=args.layout,
        valid_patients=args.valid_patients,
        test_patients=args.test_patients,
        workers=args.workers,
        overwrite=args.overwrite,
    )
    if sys.stdout.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("drawing images"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task("synth", total=None)

            def progress(done: int, total: int) -> None:
                if done == 1 or done == total or done % 16 == 0:
                    bar.update(task, completed=done, total=total)

            path = synth.synthesize(args.out, progress=progress, **kwargs)
    else:
        path = synth.synthesize(args.out, **kwargs)
    print(path)
    return 0
