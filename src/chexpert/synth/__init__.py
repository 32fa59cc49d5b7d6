"""Look-alike CheXpert downloads: the real formats and statistics, synthetic content.

One module per kind of download, each writing what Stanford ships:

- :mod:`~chexpert.synth.release`: the small and full releases (folder, zip, AIMI batch zips), with
  pictures drawn from the labels;
- :mod:`~chexpert.synth.testset`: the test set's labels and radiologists with a CheXlocalize look-alike;
- :mod:`~chexpert.synth.mimic`: MIMIC-CXR-JPG, with its quirks;
- :mod:`~chexpert.synth.plus`: CheXpert Plus, with report text from :mod:`~chexpert.synth.report`
  and DICOM files from :mod:`~chexpert.synth.dicom`.

They share four modules, in layers (each imports only from those before it, never a name with
an underscore; no circles):

- :mod:`~chexpert.synth.rows`: the real CSVs' statistics, the rows drawn from them, the CSV writers;
- :mod:`~chexpert.synth.draw`: a row's picture, drawn from its labels, and its JPEG;
- :mod:`~chexpert.synth.write`: pictures by a pool of workers in job order, byte-identical zips;
- :mod:`~chexpert.synth.place`: staging, claiming targets (only what synth wrote is replaced),
  synth's marker, moving the result into place.

So: rows <- draw <- write <- place <- testset, mimic <- release <- plus (release writes the test
set through testset; plus writes the small release it joins to through release); report and
dicom import no synth module.

>>> from chexpert.synth import synthesize
>>> root = synthesize(tmp_path, patients=20, seed=1)
"""

from chexpert.synth.draw import render_jpeg, render_pixels
from chexpert.synth.release import AIMI_BATCHES, LAYOUTS, RELEASES, synthesize
from chexpert.synth.rows import GROUNDTRUTH_COLUMNS, csv_bytes, groundtruth_rows, synth_rows, write_csv

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
