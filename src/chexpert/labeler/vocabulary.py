"""What counts as a mention of each observation: synonyms, abbreviations, spellings, look-alikes.

Each phrase is written once, in its singular American spelling; :func:`terms` adds the plurals,
the British spellings and the common misspellings of the key words, and checks that no phrase
is listed twice with different meanings.

Four kinds of phrase:

- a mention of one or more observations ("hydropneumothorax" is both a Pneumothorax and a
  Pleural Effusion);
- an *attribute*: "heart size", "mediastinum", "cardiac silhouette" name what is measured, not a
  finding; they give a label only when their clause says enlarged, normal or hedged ("heart size
  is normal" is a negative Cardiomegaly, "heart size is stable" says nothing);
- an *exclusion*: a phrase that looks like a mention but is not one ("pericardial effusion" is not
  a Pleural Effusion, "calcified nodule" is not a Lung Lesion, "kerley b lines" are not Support
  Devices). Found by the same longest-match pass, so the shorter mention inside it is never seen;
- an *other abnormality* (emphysema, hiatal hernia, scoliosis, ...): not one of the 14, but a
  positive or uncertain mention means the report is not a No Finding.

>>> term = terms()["chf"]
>>> term.observations, term.implies
(('Edema',), ('Cardiomegaly',))
>>> terms()["pericardial effusion"].observations, terms()["kerley b lines"].observations
(('Other abnormality',), ('Edema',))
>>> terms()["nipple marker"].excluded
True
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

from chexpert.labeler.phrases import normalize
from chexpert.schema import OBSERVATIONS

__all__ = ["OTHER", "Term", "terms", "attribute_findings"]

#: The pseudo-observation of abnormalities outside the 14 (they only decide No Finding).
OTHER: Final = "Other abnormality"


@dataclass(frozen=True, slots=True)
class Term:
    """One phrase of the vocabulary and what it means."""

    phrase: str  # as listed (the canonical spelling)
    observations: tuple[str, ...]  # empty for an exclusion; (OTHER,) for another abnormality
    attribute: bool = False  # names a measured structure: a label only with a finding word
    implies: tuple[str, ...] = ()  # observations made at least uncertain when positive or uncertain

    @property
    def excluded(self) -> bool:
        return not self.observations


# Mentions per observation. "No Finding" has none: it is decided from the others.
_MENTIONS: Final[dict[str, tuple[str, ...]]] = {
    "Enlarged Cardiomediastinum": (
        "enlarged cardiomediastinum", "widened mediastinum", "mediastinal widening", "widening of the mediastinum",
        "mediastinal enlargement", "enlargement of the mediastinum", "enlarged mediastinum",
        "cardiomediastinal enlargement", "enlargement of the cardiomediastinal silhouette",
        "widened superior mediastinum", "superior mediastinal widening", "mediastinal prominence",
        "prominent mediastinum", "widened mediastinal silhouette", "widening of the superior mediastinum",
        "mediastinal mass", "mediastinal lipomatosis", "paratracheal widening", "widened paratracheal stripe",
        "paratracheal stripe widening", "widening of the paratracheal stripe", "right paratracheal widening",
    ),
    "Cardiomegaly": (
        "cardiomegaly", "cardiac enlargement", "enlarged heart", "enlargement of the heart",
        "enlargement of the cardiac silhouette", "cardiac chamber enlargement", "chamber enlargement",
        "ventricular enlargement", "left ventricular enlargement", "right ventricular enlargement",
        "biventricular enlargement", "atrial enlargement", "left atrial enlargement", "right atrial enlargement",
        "cardiomegalic", "globular heart", "enlarged cardiac silhouette", "cardiac silhouette enlargement",
        "cardiac megaly", "lv enlargement", "la enlargement",
    ),
    "Lung Opacity": (
        "opacity", "opacification", "opacified", "opacifying", "airspace disease", "air space disease",
        "airspace opacity", "air space opacity", "airspace process", "air space process", "airspace",
        "infiltrate", "infiltration", "infiltrative", "infiltrative process",
        "interstitial marking", "interstitial pattern", "interstitial opacity", "interstitial prominence",
        "interstitial thickening", "interstitial lung disease", "interstitial disease", "interstitial abnormality",
        "interstitial process", "interstitial change", "reticular opacity", "reticular pattern", "reticular marking",
        "reticulation", "reticulonodular", "reticulonodular opacity", "reticulonodular pattern",
        "ground glass", "ground glass opacity", "ggo", "haziness", "hazy opacity", "hazy", "hazy opacification",
        "increased density", "patchy density", "hazy density", "airspace density", "parenchymal density",
        "alveolar density", "confluent density", "ill defined density", "increased opacity", "decreased translucency", "decreased lucency",
        "parenchymal scarring", "scarring", "scar", "fibrotic change", "fibrotic scarring",
        "peribronchial thickening", "peribronchial cuffing", "bronchial wall thickening", "bronchovascular crowding",
        "increased lung marking", "increased markings", "prominent interstitial marking", "coarse interstitial marking",
        "streaky opacity", "patchy opacity", "linear opacity", "lung opacity", "pulmonary opacity",
        "parenchymal opacity", "airspace filling", "alveolar opacity", "alveolar process", "perihilar haziness",
    ),
    "Lung Lesion": (
        "mass", "nodule", "nodular density", "nodular opacity", "nodular opacification", "nodularity",
        "lump", "cavitary lesion", "cavitary mass", "cavitating lesion", "cavitary nodule",
        "carcinoma", "neoplasm", "tumor", "malignancy", "lung cancer", "bronchogenic carcinoma",
        "lung lesion", "pulmonary lesion", "lesion", "pulmonary nodule", "lung nodule", "pulmonary mass",
        "lung mass", "spiculated", "spiculated mass", "metastatic nodule", "metastatic mass", "metastatic lesion",
        "neoplastic process", "hilar mass", "masslike", "mass like", "masslike opacity", "mass like opacity",
        "nodular lesion", "coin lesion", "micronodule", "micronodular",
    ),
    "Edema": (
        "edema", "pulmonary edema", "interstitial edema", "alveolar edema", "perihilar edema",
        "vascular congestion", "pulmonary vascular congestion", "pulmonary venous congestion", "venous congestion",
        "pulmonary congestion", "congestion", "central venous congestion", "congestive change",
        "fluid overload", "volume overload", "vascular engorgement", "pulmonary vascular engorgement",
        "cephalization", "cephalisation", "vascular redistribution", "pulmonary vascular redistribution",
        "kerley b line", "kerley line", "septal line", "septal thickening", "interlobular septal thickening",
        "indistinctness", "vascular indistinctness", "indistinct pulmonary vasculature", "indistinct vasculature",
        "vascular prominence", "pulmonary vascular prominence", "prominent pulmonary vasculature",
        "prominence of the pulmonary vasculature", "engorged pulmonary vasculature", "pulmonary venous hypertension",
        "noncardiogenic edema", "cardiogenic edema", "vascular blurring",
        "hydrostatic edema", "vascular plethora", "edematous", "edematous change", "edematous lung",
        "elevated pulmonary venous pressure", "increased pulmonary venous pressure", "elevated venous pressure",
    ),
    "Consolidation": (
        "consolidation", "consolidative", "consolidated", "consolidating", "airspace consolidation",
        "air space consolidation", "consolidative opacity", "consolidative process", "air bronchogram",
        "lobar consolidation", "dense consolidation",
    ),
    "Pneumonia": (
        "pneumonia", "bronchopneumonia", "pneumonic", "infection", "infectious process", "infectious",
        "pna", "pneumonitis", "aspiration pneumonia", "superinfection", "infectious etiology",
        "infective process", "lobar pneumonia", "multifocal pneumonia", "atypical infection",
        "infectious or inflammatory process", "inflammatory or infectious process", "pneumonic process",
        "pneumonic infiltrate", "infectious infiltrate",
    ),
    "Atelectasis": (
        "atelectasis", "atelectatic", "atelectatic change", "collapse", "lobar collapse",
        "subsegmental atelectasis", "platelike atelectasis", "plate like atelectasis", "plate like",
        "platelike", "discoid atelectasis", "linear atelectasis", "bandlike atelectasis", "band like atelectasis",
        "dependent atelectasis", "compressive atelectasis", "passive atelectasis", "lobar atelectasis",
        "collapsed lobe", "lobe collapse", "lung collapse", "collapsed",
    ),
    "Pneumothorax": (
        "pneumothorax", "ptx", "pnx", "pneumothoraxes", "pneumothoraces", "tension pneumothorax",
        "apical pneumothorax", "pleural air", "air in the pleural space", "hydropneumothorax",
    ),
    "Pleural Effusion": (
        "effusion", "pleural effusion", "pleural fluid", "hydrothorax", "hemothorax", "layering fluid",
        "subpulmonic effusion", "loculated fluid", "loculated effusion", "fissural fluid",
        "fluid in the fissure", "fluid within the fissure", "fluid in the minor fissure", "fluid in the major fissure",
        "fluid within the minor fissure", "fluid within the major fissure", "fluid along the fissure",
        "fluid along the minor fissure", "fluid tracking along the fissure", "fluid in the fissures", "empyema", "pleural collection", "meniscus of fluid",
        "parapneumonic effusion", "hydropneumothorax",
    ),
    "Pleural Other": (
        "pleural thickening", "pleural plaque", "calcified pleural plaque", "pleural calcification",
        "fibrothorax", "pleural scar", "pleural scarring", "pleuropericardial scar", "pleural pericardial scar",
        "apical pleural thickening", "apical cap", "pleural irregularity", "pleural abnormality",
        "pleural disease", "pleural based mass", "pleural mass", "pleural lesion", "pleural nodularity",
        "mesothelioma", "asbestos related pleural disease", "pleural reaction", "pleural fibrosis",
        "fibrosis", "pleural based density", "pleural based nodule", "apical pleural cap", "pleural cap",
    ),
    "Fracture": (
        "fracture", "fractured", "fx", "rib fracture", "compression fracture", "fracture deformity",
        "healed fracture", "healing fracture", "callus", "callus formation", "displaced fracture",
        "nondisplaced fracture", "non displaced fracture", "fracture fragment", "fracture line",
    ),
    "Support Devices": (
        "tube", "endotracheal tube", "et tube", "ett", "e t tube", "tracheostomy", "tracheostomy tube",
        "trach", "trach tube", "tracheal tube", "nasogastric tube", "ng tube", "ngt", "orogastric tube", "og tube",
        "ogt", "enteric tube", "feeding tube", "dobhoff", "dobbhoff", "dobhoff tube", "dobbhoff tube",
        "gastric tube", "g tube", "gastrostomy tube", "peg tube", "chest tube", "thoracostomy tube",
        "pigtail catheter", "pigtail", "pleural catheter", "pleurx", "pleurx catheter", "drain", "surgical drain",
        "mediastinal drain", "jp drain", "catheter", "central venous catheter", "central line",
        "central venous line", "cvc", "cvl", "picc", "picc line", "port", "port a cath", "portacath",
        "port catheter", "mediport", "power port", "chest port", "infusion port", "hemodialysis catheter",
        "dialysis catheter", "tunneled catheter", "tunneled dialysis catheter", "swan ganz", "swan ganz catheter",
        "pulmonary artery catheter", "pa catheter", "introducer", "introducer sheath", "sheath", "cordis",
        "ij line", "ij catheter", "ij central line", "subclavian line", "subclavian catheter", "line",
        "vascular catheter", "venous catheter", "midline catheter",
        "pacemaker", "pacer", "pacer lead", "pacer wire", "pacing lead", "pacing wire", "lead tip",
        "pacemaker lead", "pacemaker generator", "pacer generator", "leads", "aicd", "icd", "defibrillator",
        "cardiac device", "loop recorder", "implantable loop recorder", "biventricular pacer", "generator",
        "battery pack", "ekg lead", "ecg lead", "monitoring lead", "telemetry lead", "electrode", "ekg electrode",
        "external pad", "defibrillator pad", "pacing pad", "valve replacement", "prosthetic valve",
        "mitral valve replacement", "aortic valve replacement", "tavr", "tavi", "mitraclip", "mitral clip",
        "annuloplasty ring", "annuloplasty", "stent", "coronary stent", "svc stent", "tracheal stent",
        "esophageal stent", "biliary stent", "airway stent", "lvad", "left ventricular assist device",
        "ventricular assist device", "impella", "iabp", "intra aortic balloon pump", "balloon pump",
        "intraaortic balloon pump", "ecmo cannula", "cannula", "hardware", "orthopedic hardware",
        "fixation hardware", "spinal fusion hardware", "surgical hardware", "spinal hardware", "screw", "plate",
        "rod", "prosthesis", "arthroplasty", "shoulder arthroplasty", "humeral prosthesis",
        "sternotomy wire", "sternal wire", "median sternotomy wire", "cerclage wire", "wire", "guidewire",
        "coil", "embolization coil", "device", "apparatus", "support device", "support apparatus",
        "life support", "monitoring device", "tubes and lines", "lines and tubes", "line and tube",
        "ivc filter", "vena cava filter", "nerve stimulator", "vagal nerve stimulator", "spinal cord stimulator",
        "stimulator", "tubing", "oxygen tubing", "shunt catheter", "shunt tubing", "vp shunt",
        "ventriculoperitoneal shunt", "breast implant", "tissue expander", "implant", "spinal stimulator",
        "enteric catheter", "nasoenteric tube", "feeding catheter", "pacing device", "cardiac pacemaker",
        "dual lead pacemaker", "dual chamber pacemaker", "single lead pacemaker", "esophageal probe",
        "temperature probe", "esophageal temperature probe", "clip", "surgical clip", "mediastinal clip", "nasogastric", "orogastric",
        "lead", "lead fragment", "catheter fragment", "retained fragment", "wire fragment", "retained lead",
        "gastric band", "lap band", "gastric banding", "gastric banding device", "ett tube",
        # a broken wire or lead is a device, not a bone (no Fracture)
        "lead fracture", "wire fracture", "fractured wire", "fractured sternal wire", "fractured lead", "broken wire",
        "broken sternal wire", "fracture of the wire", "fracture of the lead", "fracture of sternal wire",
        "fracture of a sternal wire", "sternal wire fracture", "fractured sternotomy wire", "broken sternotomy wire",
        "fracture of the sternal wire", "fractured pacer lead", "fractured pacemaker lead", "lead is fractured",
        "wire is fractured", "wires are fractured", "fractured median sternotomy wire", "sternotomy wire fracture",
    ),
}

# Phrases that mention two observations ("the word opacity is there").
_COMPOUNDS: Final[dict[str, tuple[str, ...]]] = {
    **dict.fromkeys(
        ("nodular opacity", "nodular opacification", "masslike opacity", "mass like opacity", "nodular airspace opacity",
         "nodular consolidative opacity"),
        ("Lung Opacity", "Lung Lesion"),
    ),
    **dict.fromkeys(("consolidative opacity", "consolidative opacification", "consolidating opacity"), ("Lung Opacity", "Consolidation")),
    **dict.fromkeys(("atelectatic opacity", "atelectatic opacification"), ("Lung Opacity", "Atelectasis")),
    **dict.fromkeys(
        ("pleural parenchymal scarring", "pleuroparenchymal scarring", "pleuro parenchymal scarring",
         "pleural parenchymal scar", "pleuroparenchymal scar", "pleuro parenchymal scar", "interstitial fibrosis",
         "pleuroparenchymal opacity", "pleural parenchymal opacity", "fibrotic opacity"),
        ("Lung Opacity", "Pleural Other"),
    ),
    "hydropneumothorax": ("Pneumothorax", "Pleural Effusion"),
}

# Structures whose size or outline is described: a label only with a finding word or a trigger.
_ATTRIBUTES: Final[dict[str, tuple[str, ...]]] = {
    "Enlarged Cardiomediastinum": (
        "cardiomediastinum", "cardiomediastinal silhouette", "cardiomediastinal contour", "cardiomediastinal size",
        "cardiomediastinal shadow", "cardiomediastinal", "cardio mediastinal silhouette", "cardio mediastinal",
        "mediastinum", "mediastinal contour", "mediastinal silhouette", "mediastinal width", "mediastinal shadow",
        "superior mediastinum", "mediastinal", "mediastinal structure", "cardiothymic silhouette", "cardiothymic contour", "cardiothymic", "mediastinal configuration",
        "cardiomediastinal configuration", "mediastinal border",
    ),
    OTHER: (
        "hemidiaphragm", "diaphragm", "hemidiaphragms", "aorta", "aortic arch", "aortic knob", "thoracic aorta",
        "descending aorta", "ascending aorta", "hila", "hilum", "hilar contour", "hilar", "pulmonary artery",
        "pulmonary arteries", "main pulmonary artery",
    ),
    "Cardiomegaly": (
        "heart", "heart size", "cardiac silhouette", "cardiac contour", "cardiac size", "cardiac shadow",
        "size of the heart", "heart contour", "cardiopericardial silhouette", "cardiothoracic ratio",
        "cardiac configuration", "heart shadow", "cardiac diameter", "cardiac",
    ),
}

# Heart failure: an Edema mention that makes Cardiomegaly at least uncertain (the original's rule).
_HEART_FAILURE: Final[tuple[str, ...]] = (
    "heart failure", "congestive heart failure", "chf", "cardiac failure", "congestive failure",
    "chf exacerbation", "cardiac decompensation", "decompensated heart failure", "left heart failure",
    "left ventricular failure", "right heart failure", "congestive cardiac failure",
)

# Look-alikes that are no mention of any observation.
_EXCLUSIONS: Final[tuple[str, ...]] = (
    # not a Pleural Effusion
    "pericardial effusion", "pericardial fluid", "joint effusion", "effusion of the pericardium",
    "knee effusion", "shoulder effusion", "glenohumeral effusion",
    # not Support Devices
    "pleural line", "visceral pleural line", "midline", "skin line", "skin fold", "skinfold",
    "azygoesophageal line", "paraspinal line", "paratracheal line", "anterior junction line",
    "posterior junction line", "lead to", "leads to", "can lead to", "may lead to", "could lead to", "lead up to",
    # lines that are shadows, not catheters
    "curvilinear line", "vertical line", "linear line", "thin line", "faint line", "horizontal line", "oblique line",
    "white line", "lucent line", "sharp line", "fine line", "curved line", "mach line", "curvilinear lucency",
    "valve calcification", "aortic valve calcification", "mitral annular calcification",
    "support the diagnosis", "supports the diagnosis", "support", "supports", "supportive",
    "port of entry", "rod like", "nipple marker", "pleural cavity", "thoracic cavity",
    "cholecystectomy clip", "mastectomy clip",
    # not Edema (soft tissue edema and anasarca are other abnormalities, below)
    "bone marrow edema",
    # not Cardiomegaly / Enlarged Cardiomediastinum
    "heart border", "left heart border", "right heart border", "cardiac border", "left cardiac border",
    "right cardiac border", "cardiac apex", "heart disease", "cardiac surgery", "cardiac monitor",
    "cardiac valve", "mediastinal lymphadenopathy", "mediastinal adenopathy", "mediastinal lymph node",
    "mediastinal shift", "shift of the mediastinum", "mediastinal air", "mediastinal emphysema",
    "mediastinal fat", "cardiophrenic angle", "cardiac pacemaker lead",
    # not Lung Lesion
    "mass effect", "soft tissue mass", "breast mass", "thyroid nodule", "thyroid mass", "nipple shadow",
    "nipple shadows", "lytic lesion", "sclerotic lesion", "bone lesion", "osseous lesion", "bony lesion",
    "skin lesion", "cutaneous lesion", "blastic lesion", "calcified lymph node", "body mass",
    # not Lung Opacity
    "bone density", "soft tissue density", "breast density", "calcific density", "metallic density",
    "opacity of the breast", "breast tissue", "overlying soft tissue",
    # not Atelectasis
    "vertebral body collapse", "vertebral collapse", "collapsed vertebra", "tracheal collapse",
    # not Pneumonia
    "infectious disease", "urinary tract infection", "uti",
    # normal variants
    "costal cartilage calcification", "calcification of the costal cartilage", "calcified costal cartilage",
    "costochondral calcification", "costochondral junction calcification", "azygos fissure", "azygos lobe",
)

# Other abnormalities: no observation of the 14, but a finding, so the report is not No Finding.
_OTHER: Final[tuple[str, ...]] = (
    # volume loss alone names no observation (the original's Atelectasis phrases are atelectasis,
    # atelectatic and collapse); it is a finding, so the report is not No Finding
    "volume loss",
    "emphysema", "emphysematous", "emphysematous change", "copd", "chronic obstructive pulmonary disease",
    "hyperinflation", "hyperinflated", "hyperexpansion", "hyperexpanded", "overinflation", "overinflated",
    "granuloma", "calcified granuloma", "granulomatous", "granulomatous disease", "calcified nodule",
    "calcified lymph node", "calcified node", "scoliosis", "kyphosis", "kyphoscoliosis",
    "degenerative change", "degenerative disease", "spondylosis", "osteopenia", "osteoporosis",
    "osteophyte", "osteophytosis", "hiatal hernia", "hernia", "tortuous aorta", "tortuosity", "tortuous",
    "aortic calcification", "atherosclerotic calcification", "atherosclerosis", "atherosclerotic",
    "aortic atherosclerosis", "unfolded aorta", "unfolding of the aorta", "aortic knob calcification",
    "ectatic aorta", "aortic ectasia", "aortic aneurysm", "aneurysm", "dilated aorta", "aortic dilation",
    "pericardial effusion", "pneumomediastinum", "pneumoperitoneum", "free air", "free intraperitoneal air",
    "subcutaneous emphysema", "subcutaneous air", "soft tissue emphysema", "bronchiectasis",
    "elevated hemidiaphragm", "elevation of the hemidiaphragm", "hemidiaphragm elevation", "eventration",
    "lymphadenopathy", "adenopathy", "hilar enlargement", "enlarged hila", "hilar prominence",
    "cyst", "bulla", "bullae", "bleb", "bullous", "bullous disease", "lytic lesion", "sclerotic lesion",
    "bone lesion", "osseous metastasis", "aspiration", "bronchitis", "bronchiolitis", "airway disease",
    "airways disease", "reactive airway disease", "small airway disease", "asthma", "dextrocardia",
    "situs inversus", "pectus excavatum", "pectus carinatum",
    "pulmonary hypertension", "pulmonary arterial hypertension", "enlarged pulmonary artery",
    "pulmonary artery enlargement", "dilated pulmonary artery", "vascular calcification",
    "goiter", "thyroid enlargement", "tracheal deviation", "tracheal narrowing", "deviation of the trachea",
    "mass effect", "soft tissue mass", "thyroid nodule", "thyroid mass", "breast mass", "body mass",
    "calcification", "calcified", "calcifications", "thickening", "osteoarthritis", "arthritis",
    "degenerative joint disease", "abnormality", "abnormalities", "blunting", "blunted", "blunting of the costophrenic angle",
    "costophrenic angle blunting", "blunted costophrenic angle", "hilar lymphadenopathy", "mediastinal lymphadenopathy",
    "mediastinal adenopathy", "mediastinal lymph node", "mediastinal shift", "shift of the mediastinum",
    "mediastinal air", "mediastinal emphysema", "cardiac monitor", "nodular thyroid", "pleural lipoma",
    "soft tissue edema", "subcutaneous edema", "chest wall edema", "anasarca", "pe", "pulmonary embolism",
    "pulmonary emboli", "pulmonary embolus", "embolism", "embolus", "emboli", "dilated bowel", "bowel dilatation",
    "distended bowel", "bowel obstruction", "prominent hila", "prominent hilum", "hilar fullness", "enlarged hilum",
    "metastasis", "metastatic disease", "osseous metastasis", "bony metastasis", "skeletal metastasis",
    "ards", "acute respiratory distress syndrome", "aortic injury", "aortic dissection", "dissection",
    "mediastinal hematoma", "aspiration pneumonitis", "pulmonary contusion", "traumatic aortic injury",
    "wedge deformity", "compression deformity", "vertebral body height loss", "loss of vertebral body height",
    "loss of height", "dilated loops of bowel", "dilated small bowel", "dilated loop of bowel", "bowel loops",
    "cp angle blunting", "costophrenic blunting", "blunting of the cp angle", "blunted cp angle",
    "blunting of the costophrenic angles", "blunting of the left costophrenic angle",
    "lipoma", "hyperlucency", "lucency", "lucent", "osteolysis", "sclerosis", "cardiac valve",
    "mitral annular calcification", "valve calcification", "aortic valve calcification",
    "coronary calcification", "coronary artery calcification", "mastectomy", "postsurgical change",
    "postoperative change", "post surgical change", "post operative change", "surgical change",
    "chronic change", "chronic lung disease", "lung disease", "air trapping", "flattened diaphragm",
    "flattening of the diaphragm", "flattening of the hemidiaphragm", "flattened hemidiaphragm",
    "contusion", "hematoma", "hemorrhage",
    "pulmonary hemorrhage", "sarcoidosis", "tuberculosis", "old tuberculosis", "bronchiolectasis",
    "honeycombing", "cystic change", "cavitation",
)

# Old, healed infection is not a Pneumonia (GUIDELINES.md, section 12): "sequela of old
# granulomatous infection", "prior granulomatous disease", "remote infection". The original labeler
# read "infection" in them as a positive Pneumonia; here they are another abnormality (a finding,
# so no No Finding). Healed fractures stay Fractures, as the guidelines say.
_PAST_INFECTIONS: Final[tuple[str, ...]] = tuple(
    f"{lead}{age}{disease}"
    for lead in ("", "sequela of ", "sequelae of ", "sequela of an ", "sequela of a ", "residua of ", "stigmata of ")
    for age in ("", "old ", "prior ", "previous ", "remote ", "healed ", "past ", "chronic ", "old healed ", "prior healed ")
    for disease in ("infection", "pneumonia", "granulomatous infection", "granulomatous disease", "infectious process",
                    "tuberculosis", "tb", "tuberculous infection", "histoplasmosis", "granulomatous process", "fungal infection")
    if (lead or age) and f"{age}{disease}" != "old tuberculosis"
)

_IRREGULAR_PLURALS: Final[dict[str, str]] = {
    "atelectasis": "atelectases",
    "pneumothorax": "pneumothoraces",
    "hydropneumothorax": "hydropneumothoraces",
    "metastasis": "metastases",
    "apparatus": "apparatus",
    "fibrosis": "fibroses",
    "bronchiectasis": "bronchiectases",
    "callus": "calluses",
    "bulla": "bullae",
    "diagnosis": "diagnoses",
    "thorax": "thoraces",
    "hemothorax": "hemothoraces",
    "hydrothorax": "hydrothoraces",
    "fibrothorax": "fibrothoraces",
    "cannula": "cannulae",
    "lumen": "lumina",
    "sclerosis": "scleroses",
    "tuberculosis": "tuberculoses",
    "spondylosis": "spondyloses",
    # countable, though their ending says adjective or disease ("pneumonias", "multiple pneumonias")
    "pneumonia": "pneumonias",
    "bronchopneumonia": "bronchopneumonias",
}
# Last words that are not countable nouns: no plural is made. Countable findings get one, even
# those a report rarely counts ("consolidations", "thickenings", "calcifications"): a user's
# hospital writes them, and a missed plural turns an abnormal report into a No Finding.
_NO_PLURAL_ENDINGS: Final[tuple[str, ...]] = ("ed", "ic", "ous", "al", "ive", "ar", "ia", "ly", "ema", "osis", "asis", "itis", "ty ratio", "ght")
_NO_PLURAL_WORDS: Final[frozenset[str]] = frozenset(
    {"edema", "congestion", "overload", "hazy", "airspace", "ground glass", "cephalization", "cephalisation",
     "ptx", "ett", "ngt", "ogt", "cvc", "cvl", "picc", "aicd", "icd", "tavr", "tavi", "lvad", "iabp", "fx", "pna",
     "copd", "chf", "ggo", "uti", "hardware", "equipment", "support", "life support", "trach", "dobhoff", "dobbhoff",
     "pleurx", "mitraclip", "impella", "cordis", "swan ganz", "reticulonodular", "micronodular", "spiculated",
     "masslike", "mass like", "plate like", "platelike", "pigtail", "indistinctness", "haziness", "scarring",
     "hyperinflation", "hyperexpansion",
     "overinflation", "engorgement", "redistribution", "tortuosity", "aspiration",
     "blunting",
     "asthma", "sclerosis", "osteolysis", "honeycombing", "lipomatosis",
     "collapse", "volume loss", "loss of height", "air", "fluid", "anasarca", "emphysema",
     "opacifying", "consolidating", "enlarging", "bandlike", "air trapping", "cuffing", "crowding", "filling",
     "fibrosis", "kyphosis", "scoliosis", "kyphoscoliosis", "osteopenia", "osteoporosis",
     "osteophytosis", "spondylosis", "atherosclerosis", "arthritis", "osteoarthritis", "bronchitis",
     "bronchiolitis", "pneumonitis", "tuberculosis", "sarcoidosis", "fluid status", "vascular plethora"}
)

# British spellings and other spelling variants, applied as substring replacements.
_SPELLINGS: Final[tuple[tuple[str, str], ...]] = (
    ("edema", "oedema"),
    ("hemo", "haemo"),
    ("hema", "haema"),
    ("hemorrhage", "haemorrhage"),
    ("tumor", "tumour"),
    ("esophag", "oesophag"),
    ("orthopedic", "orthopaedic"),
    ("cephalization", "cephalisation"),
    ("ischemi", "ischaemi"),
    ("centimeter", "centimetre"),
)

# Words long and distinctive enough that one typo (a letter missing, doubled or swapped with its
# neighbour) still names them unambiguously; reports are typed fast.
_TYPO_WORDS: Final[tuple[str, ...]] = (
    "cardiomegaly", "cardiomediastinal", "cardiomediastinum", "mediastinum", "mediastinal", "opacity",
    "opacification", "opacified", "infiltrate", "consolidation",
    "consolidative", "pneumonia", "atelectasis", "atelectatic", "pneumothorax", "pneumothoraces", "effusion",
    "fracture", "pacemaker", "catheter", "tracheostomy", "nasogastric", "emphysema", "granuloma",
    "hyperinflation", "congestion", "bronchopneumonia", "hydropneumothorax", "infection", "infiltration",
)


def _plural(phrase: str) -> str | None:
    last = phrase.rsplit(" ", 1)[-1]
    if phrase in _NO_PLURAL_WORDS or last in _NO_PLURAL_WORDS:
        return None
    if last in _IRREGULAR_PLURALS:
        plural = _IRREGULAR_PLURALS[last]
    elif last.endswith(_NO_PLURAL_ENDINGS) or len(last) < 3:
        return None
    elif last.endswith("y") and last[-2] not in "aeiou":
        plural = last[:-1] + "ies"
    elif last.endswith(("s", "x", "sh", "ch", "z")):
        plural = last + "es"
    else:
        plural = last + "s"
    return phrase[: len(phrase) - len(last)] + plural


def _spellings(phrase: str) -> set[str]:
    forms = {phrase}
    for american, british in _SPELLINGS:
        forms |= {form.replace(american, british) for form in forms if american in form}
    return forms


def _typos(word: str) -> set[str]:
    """One letter missing, doubled, swapped with its neighbour, or a vowel for another vowel."""
    out = set()
    for i in range(len(word)):
        out.add(word[:i] + word[i + 1 :])
        out.add(word[: i + 1] + word[i] + word[i + 1 :])
        if word[i] in "aeiouy":
            out.update(word[:i] + vowel + word[i + 1 :] for vowel in "aeiouy")
        if i + 1 < len(word) and word[i] != word[i + 1]:
            out.add(word[:i] + word[i + 1] + word[i] + word[i + 2 :])
    out.discard(word)
    return out


def _listed() -> list[Term]:
    listed: list[Term] = []
    for observation, phrases in _MENTIONS.items():
        for phrase in phrases:
            listed.append(Term(phrase, (observation,)))
    for observation, phrases in _ATTRIBUTES.items():
        for phrase in phrases:
            listed.append(Term(phrase, (observation,), attribute=True))
    for phrase, observations in _COMPOUNDS.items():
        listed.append(Term(phrase, tuple(o for o in OBSERVATIONS if o in observations)))
    for phrase in _HEART_FAILURE:
        listed.append(Term(phrase, ("Edema",), implies=("Cardiomegaly",)))
    for phrase in _EXCLUSIONS:
        listed.append(Term(phrase, ()))
    for phrase in _OTHER:
        listed.append(Term(phrase, (OTHER,)))
    for phrase in _PAST_INFECTIONS:
        listed.append(Term(phrase, (OTHER,)))
    return listed


def _merge(a: Term, b: Term) -> Term:
    """One phrase listed under several observations mentions all of them; an exclusion or other
    abnormality listed beside a real mention gives way to the mention."""
    real_a = tuple(o for o in a.observations if o != OTHER)
    real_b = tuple(o for o in b.observations if o != OTHER)
    if real_a and real_b:
        if a.attribute != b.attribute:
            raise ValueError(f"vocabulary: {a.phrase!r} is both an attribute and a mention")
        observations = tuple(o for o in OBSERVATIONS if o in real_a + real_b)
        return Term(a.phrase, observations, a.attribute, tuple(dict.fromkeys(a.implies + b.implies)))
    if real_a or real_b:
        return a if real_a else b
    # exclusion and other abnormality: not an observation, but still a finding
    return a if a.observations else b


@functools.cache
def terms() -> dict[str, Term]:
    """Every phrase of the vocabulary (lower case, gaps as single spaces) and its :class:`Term`.

    Plural, British and misspelt forms of a listed phrase map to the listed phrase's term; a form
    never replaces a phrase that is listed in its own right.

    >>> terms()["pleural effusions"].observations
    ('Pleural Effusion',)
    >>> terms()["pnuemothorax"].phrase
    'pneumothorax'
    """
    listed: dict[str, Term] = {}
    for term in _listed():
        key = normalize(term.phrase)
        if key != term.phrase:
            raise ValueError(f"vocabulary: write {term.phrase!r} as {key!r}")
        listed[key] = _merge(listed[key], term) if key in listed else term
    vocabulary = dict(listed)
    derived: dict[str, Term] = {}
    for key, term in listed.items():
        forms = _spellings(key)
        plural = _plural(key)
        if plural is not None:
            forms |= _spellings(plural)
        for form in forms - {key}:
            if form not in listed:
                derived.setdefault(form, term)
    vocabulary.update(derived)
    for word in _TYPO_WORDS:
        term = listed[word]
        plural = _plural(word)
        for form in (word,) if plural is None else (word, plural):
            for typo in _typos(form):
                if typo not in vocabulary:
                    vocabulary[typo] = term
    return vocabulary


_FINDING_WORDS: Final[tuple[str, ...]] = (
    "enlarged", "enlargement", "enlarging", "large", "larger", "widened", "widening", "wide", "prominent",
    "prominence", "increased", "increase", "increasing", "cardiomegaly", "dilated", "dilatation", "dilation",
    "globular", "big", "expanded", "engorged", "abnormal", "mild cardiomegaly", "moderate cardiomegaly",
)


def attribute_findings() -> tuple[str, ...]:
    """Words that make an attribute ("heart size", "mediastinum") a positive mention in its clause.

    >>> "enlarged" in attribute_findings()
    True
    """
    return _FINDING_WORDS
