"""Synthetic lateral chest radiographs: a side view, not a copy of the frontal phantom.

The patient faces the image left: anterior chest wall and sternum on the left, the vertebral
column and the posterior ribs on the right, the heart as an anterior-inferior density, the
hemidiaphragms as domes with the deep posterior costophrenic sulcus, the trachea as an air column.
Findings are drawn where a lateral shows them (pleural effusion fills the posterior sulcus, an
enlarged heart fills the retrosternal clear space, opacities are blobs over the lung). Rendering
is vectorized NumPy in normalized coordinates and deterministic in the generator passed in; the
frontal phantom's anatomy sets the patient's size, exposure and noise, so the two views of a
study look like one patient.
"""

from __future__ import annotations

import numpy as np

from cxr_tf.core.errors import CxrConfigError
from cxr_tf.synth.phantom import Anatomy

# What each finding looks like on the lateral (ChestX-ray14 names, as the frontal renderer's).
DRAWN = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
         "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")


def _smooth(v, lo, hi):
    t = np.clip((v - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _blob(x, y, cx, cy, rx, ry, edge=0.25):
    d = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    return 1.0 - _smooth(d, 1.0 - edge, 1.0 + edge)


def render_lateral(findings, size: int, rng: np.random.Generator, anatomy: Anatomy) -> np.ndarray:
    """A uint8 (size, size) lateral view of ``anatomy`` with ``findings`` (names of :data:`DRAWN`)."""
    todo = set(findings or ())
    unknown = todo - set(DRAWN)
    if unknown:
        raise CxrConfigError(f"unknown finding(s) {sorted(unknown)}; expected some of: {', '.join(DRAWN)}")
    if size < 32:
        raise CxrConfigError(f"must be at least 32 pixels, got {size}", key="size")
    u = rng.uniform
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / np.float32(size)
    # body: anterior wall on the left, back on the right, narrowing to the neck at the top
    front, back = 0.14 + u(-0.02, 0.02), 0.88 + u(-0.02, 0.02)
    neck = _smooth(y, 0.0, 0.16)
    body = _smooth(x, front - 0.03 + (1 - neck) * 0.18, front + 0.02 + (1 - neck) * 0.18) * \
        (1.0 - _smooth(x, back - 0.02 - (1 - neck) * 0.12, back + 0.03 - (1 - neck) * 0.12))
    dens = 0.55 * body * anatomy.tissue
    # lungs: one dark field over both (they superimpose), bounded below by the domes
    dome = 0.64 + (anatomy.dome_r - 0.69) + 0.07 * ((x - 0.5) / 0.35) ** 2    # deep posterior sulcus
    dome += np.where(x > 0.55, 0.06 * _smooth(x, 0.55, 0.8), 0.0)
    shape = _blob(x, y, 0.5 * (front + back) - 0.01, 0.46, 0.5 * (back - front) - 0.08, 0.4, edge=0.08)
    lung = shape * (1.0 - _smooth(y, dome - 0.015, dome + 0.015))
    air = anatomy.lung_dark * 1.1
    # heart: anterior-inferior oval on the diaphragm; the retrosternal space above it stays clear
    big = "Cardiomegaly" in todo
    hx, hy = 0.36 + (0.04 if big else 0.0), 0.58
    heart = _blob(x, y, hx, hy, (0.17 if big else 0.13) * u(0.95, 1.05), (0.15 if big else 0.12) * u(0.95, 1.05),
                  edge=0.45)
    vessels = _blob(x, y, 0.5, 0.42, 0.08, 0.07, edge=0.6) * 0.25          # hila
    trachea = _blob(x, y, 0.5 + 0.05 * (y - 0.2), 0.22, 0.025, 0.16, edge=0.3)
    dens += 0.2 * body - lung * air + heart * 0.28 * lung + vessels * lung - trachea * 0.25
    # spine and posterior ribs; sternum
    spine_x = back - 0.1
    vert = _smooth(x, spine_x - 0.05, spine_x - 0.035) * (1 - _smooth(x, spine_x + 0.035, spine_x + 0.05))
    period = anatomy.vert_h * 1.1
    discs = 0.75 + 0.25 * np.cos(2 * np.pi * (y - anatomy.rib_phase * period) / period)
    dens += 0.35 * vert * discs * _smooth(y, 0.05, 0.12)
    ribs = _smooth(np.cos(2 * np.pi * (y - 0.35 * (x - back) ** 2) / (1.3 * anatomy.rib_spacing)), 0.75, 0.95)
    dens += 0.05 * ribs * lung * _smooth(x, 0.45, 0.75)
    dens += 0.25 * _blob(x, y, front + 0.035, 0.42, 0.012, 0.22, edge=0.3)
    # findings
    if "Effusion" in todo:                       # meniscus filling the posterior sulcus
        level = u(0.06, 0.14)
        dens += 0.5 * lung * _smooth(y, dome - level - 0.02, dome - level + 0.02) * _smooth(x, 0.5, 0.6)
    if "Pleural_Thickening" in todo:
        dens += 0.2 * lung * (1 - _smooth(x, back - 0.15, back - 0.11))
    for name, (rx, ry, k) in {"Consolidation": (0.1, 0.08, 0.45), "Pneumonia": (0.09, 0.07, 0.4),
                              "Infiltration": (0.14, 0.1, 0.22), "Mass": (0.05, 0.05, 0.5),
                              "Nodule": (0.022, 0.022, 0.55), "Fibrosis": (0.12, 0.14, 0.18)}.items():
        if name in todo:
            dens += k * lung * _blob(x, y, u(0.35, 0.7), u(0.25, 0.6), rx, ry, edge=0.5)
    if "Atelectasis" in todo:                    # a plate-like band
        band = np.abs((y - u(0.45, 0.6)) - 0.3 * (x - 0.5)) < 0.012
        dens += 0.3 * lung * band
    if "Edema" in todo:
        dens += 0.22 * lung * _blob(x, y, 0.5, 0.45, 0.22, 0.2, edge=0.8)
    if "Pneumothorax" in todo:                   # anterior-superior lucency with no markings
        dens -= 0.2 * lung * _blob(x, y, front + 0.12, 0.25, 0.1, 0.12, edge=0.3)
    if "Emphysema" in todo:
        dens -= 0.12 * lung
    if "Hernia" in todo:
        dens += 0.4 * _blob(x, y, 0.55, dome.mean() - 0.03, 0.07, 0.05) * body
    # exposure, film noise and response, as the frontal phantom's
    dens = (dens - 0.05 - anatomy.exposure) / (0.85 * anatomy.contrast)
    dens += anatomy.noise * rng.normal(size=(size, size)).astype(np.float32)
    out = np.clip(dens, 0.0, 1.0) ** anatomy.gamma
    return np.round(out * 255.0).astype(np.uint8)
