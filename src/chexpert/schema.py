"""The dataset's vocabulary: observations, competition tasks, columns, label codes, path scheme.

Every other module takes these names from here; nothing else spells a column name.
"""

from __future__ import annotations

import enum
import re
from typing import Final

from chexpert.errors import InvalidArgumentError

__all__ = [
    "OBSERVATIONS",
    "COMPETITION_TASKS",
    "METADATA_COLUMNS",
    "CSV_COLUMNS",
    "Code",
    "LABEL_SPELLINGS",
    "SPLITS",
    "SEXES",
    "VIEWS",
    "PROJECTIONS",
    "RELEASE_KINDS",
    "RELEASE_DIRS",
    "PATIENT_RANGES",
    "strip_release_prefix",
    "study_key",
    "PATH_PATTERN",
    "MIMIC_FILES",
    "MIMIC_METADATA_COLUMNS",
    "MIMIC_SPLIT_COLUMNS",
    "MIMIC_LABEL_COLUMNS",
    "MIMIC_SPLITS",
    "MIMIC_FRONTAL",
    "MIMIC_LATERAL",
    "MIMIC_PATH_PATTERN",
    "MIMIC_PUBLISHED",
]

#: The 14 observations in the order of the CSV columns.
OBSERVATIONS: Final[tuple[str, ...]] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

#: The five observations scored in the CheXpert competition.
COMPETITION_TASKS: Final[tuple[str, ...]] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Pleural Effusion",
)

METADATA_COLUMNS: Final[tuple[str, ...]] = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")

#: The exact header of train.csv and valid.csv.
CSV_COLUMNS: Final[tuple[str, ...]] = METADATA_COLUMNS + OBSERVATIONS


class Code(enum.IntEnum):
    """Raw label states as stored (int8) in the index. All four are kept."""

    POSITIVE = 1
    NEGATIVE = 0
    UNCERTAIN = -1
    BLANK = -2  # not mentioned in the report; empty cell in the CSV


#: How the released CSVs spell each state; anything else is an error.
LABEL_SPELLINGS: Final[dict[str, Code]] = {
    "1.0": Code.POSITIVE,
    "0.0": Code.NEGATIVE,
    "-1.0": Code.UNCERTAIN,
    "": Code.BLANK,
}

SPLITS: Final[tuple[str, ...]] = ("train", "valid", "test")
SEXES: Final[tuple[str, ...]] = ("Male", "Female", "Unknown")
VIEWS: Final[tuple[str, ...]] = ("Frontal", "Lateral")
#: AP/PA column values; lateral images have an empty cell, indexed as "none".
PROJECTIONS: Final[tuple[str, ...]] = ("AP", "PA", "LL", "RL", "none")

RELEASE_KINDS: Final[tuple[str, ...]] = ("small", "full")
#: Top folder name of each release, also the prefix of every CSV ``Path``.
RELEASE_DIRS: Final[dict[str, str]] = {"small": "CheXpert-v1.0-small", "full": "CheXpert-v1.0"}

#: Inclusive patient-number ranges of each split in the released data.
PATIENT_RANGES: Final[dict[str, tuple[int, int]]] = {
    "train": (1, 64540),
    "valid": (64541, 64740),
    "test": (64741, 65240),
}

#: ``[prefix/]split/patientNNNNN/studyN/viewN_frontal.jpg``
PATH_PATTERN: Final[re.Pattern[str]] = re.compile(
    r"^(?:(?P<prefix>[^/]+)/)?(?P<split>train|valid|test)/patient(?P<patient>\d{5})"
    r"/study(?P<study>\d+)/view(?P<view>\d+)_(?P<kind>frontal|lateral)\.(?P<ext>jpg|png)$"
)

_PREFIXES = tuple(d + "/" for d in RELEASE_DIRS.values())


def strip_release_prefix(path: str) -> str:
    """Return a CSV or study path without its release folder.

    >>> strip_release_prefix("CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg")
    'train/patient00001/study1/view1_frontal.jpg'
    """
    path = path.replace("\\", "/")
    for prefix in _PREFIXES:
        if path.startswith(prefix):
            return path[len(prefix) :]
    return path


def study_key(path: str) -> str:
    """Normalise an image path or a study path to ``split/patientNNNNN/studyN``.

    Accepts any release prefix, a trailing slash, and a file name after the study.

    >>> study_key("CheXpert-v1.0/test/patient64741/study1/")
    'test/patient64741/study1'
    >>> study_key("CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg")
    'valid/patient64541/study1'
    >>> study_key("files/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg")
    'p10000032/s50414267'
    """
    mimic = MIMIC_PATH_PATTERN.match(path.strip().replace("\\", "/"))
    if mimic is not None:  # MIMIC-CXR: study ids are unique across the dataset, so the key has no split
        return f"p{mimic['subject']}/s{mimic['study']}"
    parts = [p for p in strip_release_prefix(path.strip()).split("/") if p]
    for i, part in enumerate(parts):
        if part.startswith("study"):
            return "/".join(parts[: i + 1])
    raise InvalidArgumentError(f"not a CheXpert study path: {path!r}")


# -- limits on what is read: beyond them a file, header or field is refused, naming it ------------
# (Limits of how a reader works inside, such as a sentence's clause length or how deep discovery
# looks, stay with that reader.)

#: No CheXpert image has more pixels than this (full resolution is at most about 3000 x 3000). A
#: header declaring more is refused before decoding: a few hundred bytes of JPEG can declare
#: 65,500 x 65,500 pixels, gigabytes of memory in every worker that decodes it.
MAX_PIXELS: Final[int] = 1 << 26

#: No CheXpert image comes near this (full-resolution JPEGs are about 2 MB); a larger file, or a
#: zip member declaring more, is refused before it is read.
MAX_IMAGE_BYTES: Final[int] = 64 << 20

#: The largest release CSV read (the real train.csv is 24.5 MB).
MAX_CSV_BYTES: Final[int] = 1 << 30

#: The largest synth marker read (bytes), by the readers and by synth itself: a marker of 223,414
#: images is about 15 MB; anything far larger is not one synth wrote.
MAX_MARKER_BYTES: Final[int] = 256 << 20

#: The largest RadGraph-XL file read (bytes): the real ones hold a few KiB per report.
MAX_RADGRAPH_BYTES: Final = 4 << 30

#: The Plus CSV's header is about 500 bytes: a first line longer than this is no Plus CSV, said
#: after reading this much, not the whole file.
MAX_PLUS_HEADER_BYTES: Final[int] = 64 << 10

#: The largest JSON document (manifest, annotations, gold sets) read whole.
MAX_JSON_BYTES: Final[int] = 1 << 30

#: The largest CSV a user gives (soft labels, a train.csv of one's own), and what a gzipped one may
#: inflate to: CheXpert's own train.csv is 26 MB.
MAX_TABLE_BYTES: Final[int] = 1 << 30

#: What a CSV of scores, labels or reads may weigh: the test set's groundtruth.csv is 40 kB, a
#: per-image predictions file of the full training split about 60 MB.
MAX_SCORES_BYTES: Final[int] = 1 << 30

#: The most a deflated data set may inflate to (bytes): room for the largest frame accepted
#: (``MAX_PIXELS`` samples of 32 bits) and its header. A few kilobytes of deflate can
#: inflate to gigabytes; inflation stops here.
MAX_INFLATED_BYTES: Final[int] = 4 * MAX_PIXELS + (16 << 20)

#: The most scans a JPEG may have (a progressive grayscale JPEG has about 6, colour about 10):
#: each scan is a pass over the whole image, so thousands are a way to make decoding take minutes.
MAX_JPEG_SCANS: Final[int] = 100

#: The largest store index.npz, and prepare's journal, read whole (a row of either takes well
#: under 1 KiB).
MAX_STORE_INDEX_BYTES: Final = 1 << 30
MAX_JOURNAL_BYTES: Final = 1 << 30

#: The longest report accepted, characters of a CSV cell and bytes of a ``.txt`` file: a longer
#: one is a damaged file, not a report.
MAX_REPORT: Final = 16 * 1024 * 1024

#: The longest report read, in characters: about fifty pages, where real reports hold a few
#: thousand. What lies beyond is not read (the spans of :func:`chexpert.label_report` end before
#: it), so that the work per report is bounded whatever a file holds.
LONGEST_REPORT: Final = 200_000


# -- the test set's radiologists ------------------------------------------------------------------

#: The benchmark radiologists' file stems (compared with models in the CheXpert paper).
BENCHMARK_READERS: Final[tuple[str, ...]] = ("bc4", "bc6", "bc8")
#: The five radiologists whose majority is the test set's ground truth.
CONSENSUS_READERS: Final[tuple[str, ...]] = ("bc1", "bc2", "bc3", "bc5", "bc7")

# -- CheXpert Plus ---------------------------------------------------------------------------------

#: The section columns of the Plus CSV, in CSV order (``section_`` prefix left out).
PLUS_SECTIONS: Final[tuple[str, ...]] = (
    "narrative", "clinical_history", "history", "comparison", "technique", "procedure_comments",
    "findings", "impression", "end_of_impression", "summary", "accession_number",
)  # fmt: skip
#: The 27 columns of ``df_chexpert_plus_*.csv`` in order (the file starts with an unnamed index column).
PLUS_COLUMNS: Final[tuple[str, ...]] = (
    "path_to_image", "path_to_dcm", "frontal_lateral", "ap_pa", "deid_patient_id", "patient_report_date_order", "report",
    *(f"section_{s}" for s in PLUS_SECTIONS),
    "age", "sex", "race", "ethnicity", "interpreter_needed", "insurance_type", "recent_bmi", "deceased", "split",
)  # fmt: skip
#: CheXbert label file of each report part, under ``chexbert_labels/``.
PLUS_LABEL_FILES: Final[dict[str, str]] = {"report": "report_fixed.json", "findings": "findings_fixed.json", "impression": "impression_fixed.json"}
#: RadGraph-XL file of each section, under ``radgraph-XL-annotations/``.
PLUS_RADGRAPH_FILES: Final[dict[str, str]] = {"findings": "section_findings.json", "impression": "section_impression.json"}
#: The values of the Plus demographic columns, in reading order (Unknown last).
RACES: Final[tuple[str, ...]] = (
    "White", "Asian", "Black or African American", "Native Hawaiian or Other Pacific Islander",
    "American Indian or Alaska Native", "Other", "Unknown",
)  # fmt: skip
ETHNICITIES: Final[tuple[str, ...]] = ("Non-Hispanic/Non-Latino", "Hispanic/Latino", "Unknown")
INSURANCE_TYPES: Final[tuple[str, ...]] = ("Medicare", "Medicaid", "Private Insurance", "Unknown")

# -- subgroups ---------------------------------------------------------------------------------------

#: What studies and rows can be grouped by, in one order for evaluate and subgroups: the release's
#: own columns, then the three CheXpert Plus demographics.
SUBGROUPS: Final[tuple[str, ...]] = ("sex", "age-band", "projection", "race", "ethnicity", "insurance")
#: Age bands as (label, lowest age, highest age), both inclusive. CheXpert writes unknown ages as
#: 0 and ages over 89 as 90; patients are adults, so the first band of known ages is "<40".
AGE_BANDS: Final[tuple[tuple[str, int, int], ...]] = (
    ("unknown", 0, 0),
    ("<40", 1, 39),
    ("40-59", 40, 59),
    ("60-79", 60, 79),
    ("80+", 80, 200),
)

# -- MIMIC-CXR-JPG (PhysioNet), read by chexpert.mimic ----------------------------------------------

#: The release's CSV files, by role; each is found as ``.csv.gz`` or ``.csv``, any 2.x version.
MIMIC_FILES: Final[dict[str, str]] = {
    "metadata": "mimic-cxr-2.0.0-metadata.csv",
    "split": "mimic-cxr-2.0.0-split.csv",
    "chexpert": "mimic-cxr-2.0.0-chexpert.csv",
    "negbio": "mimic-cxr-2.0.0-negbio.csv",
}
MIMIC_METADATA_COLUMNS: Final[tuple[str, ...]] = (
    "dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows", "Columns",
    "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)  # fmt: skip
MIMIC_SPLIT_COLUMNS: Final[tuple[str, ...]] = ("dicom_id", "study_id", "subject_id", "split")
#: The label files' header: the 14 observations in alphabetical order, not CheXpert's.
MIMIC_LABEL_COLUMNS: Final[tuple[str, ...]] = ("subject_id", "study_id", *sorted(OBSERVATIONS))
#: MIMIC's split names -> this package's (``SPLITS``).
MIMIC_SPLITS: Final[dict[str, str]] = {"train": "train", "validate": "valid", "test": "test"}
#: ``ViewPosition`` values of frontal and of lateral images; any other (empty, LAO, RAO, SWIMMERS, ...) is unknown.
MIMIC_FRONTAL: Final[tuple[str, ...]] = ("PA", "AP", "AP AXIAL", "PA LLD", "AP LLD", "PA RLD", "AP RLD")
MIMIC_LATERAL: Final[tuple[str, ...]] = ("LATERAL", "LL", "XTABLE LATERAL")
#: ``files/p10/p10000032/s50414267/<dicom_id>.jpg``; reports are ``files/p10/p10000032/s50414267.txt``.
MIMIC_PATH_PATTERN: Final[re.Pattern[str]] = re.compile(
    r"^(?:.*/)?(?:files/)?p(?P<group>\d\d)/p(?P<subject>\d+)/s(?P<study>\d+)(?:/(?P<dicom>[^/]+)\.jpg|\.txt)?/?$"
)
#: Published counts of MIMIC-CXR-JPG 2.0.0 (images = metadata rows; label rows per file).
MIMIC_PUBLISHED: Final[dict[str, int]] = {"images": 377_110, "studies": 227_835, "patients": 65_379, "label_rows": 227_827}
