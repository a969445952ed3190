"""Free-text radiology reports in the MIMIC-CXR style for phantom studies.

A report describes what was drawn: a plainly drawn observation is stated, a faint or ambiguous one
is hedged ("cannot be excluded", "possible", "may represent"), a negated one is denied ("No
pleural effusion."), and the rest is not mentioned. The layout follows the real reports: a centred
``FINAL REPORT`` line, ``EXAMINATION:``, ``INDICATION:`` (with ``___`` where PHI was removed),
``TECHNIQUE:``, ``COMPARISON:``, ``FINDINGS:`` and ``IMPRESSION:`` sections, lines wrapped at 79
characters with a leading space. Deterministic for a generator state.
"""

from __future__ import annotations

import textwrap

import numpy as np

WIDTH = 79
# observation -> (stated, hedged noun phrase, denied)
PHRASES = {
    "Enlarged Cardiomediastinum": ("The cardiomediastinal silhouette is widened.",
                                   "widening of the mediastinum", "The mediastinal contours are normal."),
    "Cardiomegaly": ("The heart is moderately enlarged.", "mild cardiomegaly", "The heart size is normal."),
    "Lung Opacity": ("There is a patchy opacity in the right lower lung.", "an early opacity",
                     "No focal opacity is seen."),
    "Lung Lesion": ("A 2.1 cm nodular lesion projects over the left upper lobe.", "a small pulmonary nodule",
                    "No pulmonary nodules or masses are identified."),
    "Edema": ("There is moderate pulmonary edema.", "mild pulmonary vascular congestion or edema",
              "There is no pulmonary edema."),
    "Consolidation": ("There is consolidation in the left lower lobe.", "a focal consolidation",
                      "No focal consolidation is seen."),
    "Pneumonia": ("Findings are consistent with pneumonia.", "pneumonia", "No evidence of pneumonia."),
    "Atelectasis": ("Bibasilar atelectasis is present.", "minimal atelectasis", "There is no atelectasis."),
    "Pneumothorax": ("There is a small right apical pneumothorax.", "a tiny apical pneumothorax",
                     "There is no pneumothorax."),
    "Pleural Effusion": ("There is a moderate left pleural effusion.", "a small pleural effusion",
                         "No pleural effusion."),
    "Pleural Other": ("There is pleural thickening at the right apex.", "apical pleural thickening",
                      "No pleural abnormality is seen."),
    "Fracture": ("There is a healed fracture of the left seventh rib.", "a rib fracture",
                 "No displaced fracture is seen."),
    "Support Devices": ("A right internal jugular central venous catheter terminates in the mid SVC.",
                        "a malpositioned line", "No lines or tubes are present."),
}
HEDGES = ("{} cannot be excluded.", "Possible {}.", "Findings may represent {}.",
          "There may be {}.", "Questionable {}.")
# Sentences of a normal description that name no observation (reports are 60-120 words, not 30).
FILLERS = ("The lungs are well expanded.", "The osseous structures are intact.", "The upper abdomen is unremarkable.",
           "There is no free air under the diaphragm.", "The trachea is midline.", "The visualized soft tissues are "
           "unremarkable.", "Aeration of the lungs is similar to the prior study.", "The hila are normal in size.",
           "Degenerative changes are seen in the thoracic spine.", "The diaphragms are well defined.")
INDICATIONS = ("___ year old {sex} with cough and fever  // eval for pneumonia",
               "___ year old {sex} with shortness of breath  // ? effusion",
               "History: ___ with chest pain", "___ year old {sex} s/p line placement  // line position?",
               "___ with hypoxia  // interval change?")


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _wrap(text: str) -> list[str]:
    return [" " + line for line in textwrap.wrap(text, WIDTH - 1)] or [" "]


def report(rng: np.random.Generator, *, stated=(), hedged=(), denied=(), view: str = "PA",
           lateral: bool = False, sex: str = "Female", prior: bool = False) -> str:
    """One report (str, ``\\n`` line ends) describing the observations in the three groups."""
    exam = "CHEST (PA AND LAT)" if lateral and view == "PA" else \
        "CHEST (PORTABLE AP)" if view == "AP" else f"CHEST ({view or 'SINGLE VIEW'})"
    technique = "Chest PA and lateral" if lateral else f"Single {view or 'frontal'} view of the chest"
    sentences = [PHRASES[o][0] for o in stated]
    sentences += [_capital(HEDGES[int(rng.integers(len(HEDGES)))].format(PHRASES[o][1])) for o in hedged]
    sentences += [PHRASES[o][2] for o in denied]
    sentences += [FILLERS[i] for i in rng.choice(len(FILLERS), size=int(rng.integers(2, 6)), replace=False)]
    order = rng.permutation(len(sentences))
    findings = " ".join(sentences[i] for i in order)
    # the impression restates every finding (MIMIC's labels come from it): numbered when several
    summary = [PHRASES[o][0] for o in stated] + [_capital(HEDGES[0].format(PHRASES[o][1])) for o in hedged]
    summary += [PHRASES[o][2] for o in denied]
    if not (stated or hedged):
        summary.insert(0, "No acute cardiopulmonary process.")
    impression = summary[0] if len(summary) == 1 else " ".join(f"{i + 1}. {t}" for i, t in enumerate(summary))
    indication = INDICATIONS[int(rng.integers(len(INDICATIONS)))].format(sex=sex.lower() if sex else "patient")
    lines = [" " * 33 + "FINAL REPORT", *_wrap(f"EXAMINATION:  {exam}"), " ",
             *_wrap(f"INDICATION:  {indication}"), " ", *_wrap(f"TECHNIQUE:  {technique}"), " ",
             *_wrap(f"COMPARISON:  {'___' if prior else 'None.'}"), " ", " FINDINGS: ", " ",
             *_wrap(findings), " ", " IMPRESSION: ", " ", *_wrap(impression)]
    return "\n".join(lines) + "\n"
