"""Look-alike CheXpert downloads: the real formats and statistics, synthetic content.

One module per kind of download, each writing what Stanford ships:

- :mod:`~chexpert.synth.release`: the small and full releases (folder, zip, AIMI batch zips), with
  pictures drawn from the labels;
- :mod:`~chexpert.synth.testset`: the test set's labels and radiologists with a CheXlocalize look-alike;
- :mod:`~chexpert.synth.plus`: CheXpert Plus, with report text from :mod:`~chexpert.synth.report`
  and DICOM files from :mod:`~chexpert.synth.dicom`.

>>> from chexpert.synth import synthesize
>>> root = synthesize(tmp_path, patients=20, seed=1)
"""

from chexpert.synth.release import (
    AIMI_BATCHES,
    GROUNDTRUTH_COLUMNS,
    LAYOUTS,
    RELEASES,
    csv_bytes,
    groundtruth_rows,
    render_jpeg,
    render_pixels,
    synth_rows,
    synthesize,
    write_csv,
)

__all__ = [
    "RELEASES",
    "LAYOUTS",
    "AIMI_BATCHES",
    "GROUNDTRUTH_COLUMNS",
    "synthesize",
    "synth_rows",
    "groundtruth_rows",
    "write_csv",
    "csv_bytes",
    "render_pixels",
    "render_jpeg",
]
