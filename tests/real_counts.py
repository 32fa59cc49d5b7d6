"""Counts of the real CheXpert train.csv as issue 2 states them (the fixture is in conftest)."""

REAL_TRAIN_IMAGES = 223_414

# The real train.csv, as the issue states it: positive / uncertain / negative / blank.
REAL_LABELS = {
    "No Finding": (22381, 0, 0, 201033),
    "Enlarged Cardiomediastinum": (10798, 12403, 21638, 178575),
    "Cardiomegaly": (27000, 8087, 11116, 177211),
    "Lung Opacity": (105581, 5598, 6599, 105636),
    "Lung Lesion": (9186, 1488, 1270, 211470),
    "Edema": (52246, 12984, 20726, 137458),
    "Consolidation": (14783, 27742, 28097, 152792),
    "Pneumonia": (6039, 18770, 2799, 195806),
    "Atelectasis": (33376, 33739, 1328, 154971),
    "Pneumothorax": (19448, 3145, 56341, 144480),
    "Pleural Effusion": (86187, 11628, 35396, 90203),
    "Pleural Other": (3523, 2653, 316, 216922),
    "Fracture": (9040, 642, 2512, 211220),
    "Support Devices": (116001, 1079, 6137, 100197),
}
