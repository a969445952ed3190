"""Phantom chest radiographs: API contract, determinism, boxes that hold what was drawn, and
anatomical plausibility of the normal chest and of each finding."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cxr_tf.synth.phantom import (FINDINGS, Anatomy, Phantom, jitter_anatomy, render_phantom,
                                  sample_anatomy)

SEEDS = (0, 1, 2)


def _pair(finding, size=128, seed=0, anatomy_seed=None):
    """The same patient and generator state rendered without and with ``finding``."""
    an = sample_anatomy(np.random.default_rng(1000 + (seed if anatomy_seed is None else anatomy_seed)))
    normal = render_phantom((), size, np.random.default_rng(seed), an)
    sick = render_phantom((finding,), size, np.random.default_rng(seed), an)
    return an, normal, sick


def _inside(box, shape):
    x, y, w, h = box
    m = np.zeros(shape, bool)
    m[int(np.floor(y)):int(np.ceil(y + h)), int(np.floor(x)):int(np.ceil(x + w))] = True
    return m


def _patch(img, x, y, r=0.02):
    n = img.shape[0]
    x0, x1 = int((x - r) * n), int((x + r) * n) + 1
    y0, y1 = int((y - r) * n), int((y + r) * n) + 1
    return float(img[y0:y1, x0:x1].mean())


def test_findings_vocabulary():
    assert len(FINDINGS) == 14 and len(set(FINDINGS)) == 14
    assert FINDINGS[0] == "Atelectasis" and FINDINGS[-1] == "Hernia"
    assert "Pleural_Thickening" in FINDINGS


@pytest.mark.parametrize("size", [32, 57, 128, 224, 256, 1024])
def test_dtype_shape_and_range(size):
    ph = render_phantom(("Mass", "Effusion"), size, np.random.default_rng(size))
    assert isinstance(ph, Phantom)
    assert ph.image.dtype == np.uint8 and ph.image.shape == (size, size)
    assert ph.image.min() < 40 and ph.image.max() > 200  # uses the grey range, not a flat image


def test_deterministic_for_same_generator_state():
    a = render_phantom(("Nodule", "Edema"), 96, np.random.default_rng(7))
    b = render_phantom(["Edema", "Nodule"], 96, np.random.default_rng(7))
    assert a.image.tobytes() == b.image.tobytes() and a.boxes == b.boxes
    c = render_phantom(("Nodule", "Edema"), 96, np.random.default_rng(8))
    assert c.image.tobytes() != a.image.tobytes()
    an = sample_anatomy(np.random.default_rng(3))
    d = render_phantom((), 64, np.random.default_rng(1), an)
    e = render_phantom((), 64, np.random.default_rng(1), an)
    assert d.image.tobytes() == e.image.tobytes()


def test_generator_is_the_only_randomness():
    np.random.seed(0)
    a = render_phantom(("Pneumonia",), 64, np.random.default_rng(5))
    np.random.seed(1)
    b = render_phantom(("Pneumonia",), 64, np.random.default_rng(5))
    assert a.image.tobytes() == b.image.tobytes()


@pytest.mark.parametrize("finding", FINDINGS)
@pytest.mark.parametrize("size", [32, 128, 256])
def test_one_box_per_finding_inside_image(finding, size):
    ph = render_phantom((finding,), size, np.random.default_rng(11))
    assert set(ph.boxes) == {finding}
    x, y, w, h = ph.boxes[finding]
    assert all(isinstance(v, float) for v in (x, y, w, h))
    assert 0 <= x and 0 <= y and w >= 1 and h >= 1
    assert x + w <= size and y + h <= size


@pytest.mark.parametrize("seed", range(6))
def test_combinations_have_exactly_their_boxes(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 5))
    chosen = [str(f) for f in rng.choice(FINDINGS, size=k, replace=False)]
    ph = render_phantom(chosen, 128, rng)
    assert set(ph.boxes) == set(chosen)
    for x, y, w, h in ph.boxes.values():
        assert 0 <= x and 0 <= y and x + w <= 128 and y + h <= 128


def test_no_finding_has_no_boxes():
    assert render_phantom((), 64, np.random.default_rng(0)).boxes == {}
    assert render_phantom([], 64, np.random.default_rng(0)).boxes == {}


def test_unknown_finding_raises_naming_it():
    with pytest.raises(ValueError, match="Pneumonitis"):
        render_phantom(("Mass", "Pneumonitis"), 64, np.random.default_rng(0))
    with pytest.raises(ValueError, match="No Finding"):
        render_phantom(("No Finding",), 64, np.random.default_rng(0))


@pytest.mark.parametrize("finding", FINDINGS)
def test_change_is_concentrated_inside_the_box(finding):
    for seed in SEEDS:
        _, normal, sick = _pair(finding, 128, seed)
        diff = np.abs(sick.image.astype(float) - normal.image.astype(float))
        assert diff.sum() > 0, "the finding changed nothing"
        inside = _inside(sick.boxes[finding], diff.shape)
        assert diff[inside].sum() >= 0.7 * diff.sum()
        # and it is visible: a clear change inside the box, not just noise-level
        assert np.percentile(diff[inside], 95) >= 12


@pytest.mark.parametrize("finding", [f for f in FINDINGS if f not in ("Emphysema", "Edema")])
def test_box_is_tight_around_the_change(finding):
    _, normal, sick = _pair(finding, 256, 4)
    changed = np.abs(sick.image.astype(int) - normal.image.astype(int)) > 8
    rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
    x, y, w, h = sick.boxes[finding]
    assert cols[0] - x <= 6 and rows[0] - y <= 6
    assert x + w - cols[-1] <= 7 and y + h - rows[-1] <= 7


def test_emphysema_darkens_and_lowers_the_lungs():
    for seed in SEEDS:
        _, normal, sick = _pair("Emphysema", 128, seed)
        box = _inside(sick.boxes["Emphysema"], normal.image.shape)
        assert sick.image[box].mean() < normal.image[box].mean() - 8
        x, y, w, h = sick.boxes["Emphysema"]
        assert w > 0.55 * 128 and h > 0.5 * 128  # both lungs
        # lowered diaphragm: at the old dome height below the lungs the image is now dark
        col = normal.image[:, int(x + 0.25 * w)].astype(int) - sick.image[:, int(x + 0.25 * w)].astype(int)
        assert col[int(y + 0.8 * h):int(y + h)].mean() > 10


def test_cardiomegaly_enlarges_the_heart():
    for seed in SEEDS:
        an, _, sick = _pair("Cardiomegaly", 256, seed)
        x, y, w, h = sick.boxes["Cardiomegaly"]
        thorax = 2 * an.hw * 256
        assert w / thorax >= 0.57
        assert w > an.heart_ctr * thorax + 0.08 * thorax  # wider than this patient's normal heart
        assert x < an.cx * 256 < x + w  # straddles the midline, mostly on the image right
        assert x + w - an.cx * 256 > an.cx * 256 - x


def test_normal_heart_ratio_and_side():
    for seed in range(20):
        an = sample_anatomy(np.random.default_rng(seed))
        assert isinstance(an, Anatomy)
        assert 0.40 <= an.heart_ctr <= 0.48
        assert an.dome_r < an.dome_l  # right hemidiaphragm (image left) higher


def test_pneumothorax_is_lucent():
    for seed in SEEDS:
        _, normal, sick = _pair("Pneumothorax", 128, seed)
        box = _inside(sick.boxes["Pneumothorax"], normal.image.shape)
        assert sick.image[box].mean() < normal.image[box].mean() - 3


@pytest.mark.parametrize("finding", ["Mass", "Nodule", "Consolidation", "Effusion", "Pneumonia"])
def test_opacities_are_brighter(finding):
    for seed in SEEDS:
        _, normal, sick = _pair(finding, 128, seed)
        box = _inside(sick.boxes[finding], normal.image.shape)
        assert sick.image[box].mean() > normal.image[box].mean() + 5


def test_nodule_smaller_than_mass_and_still_visible_at_128():
    for seed in range(5):
        an = sample_anatomy(np.random.default_rng(seed))
        nod = render_phantom(("Nodule",), 128, np.random.default_rng(seed), an).boxes["Nodule"]
        mass = render_phantom(("Mass",), 128, np.random.default_rng(seed), an).boxes["Mass"]
        assert nod[2] * nod[3] < 0.5 * mass[2] * mass[3]
        assert nod[2] >= 3 and nod[3] >= 3
        thorax = 2 * an.hw * 128
        assert 0.1 * thorax <= mass[2] <= 0.25 * thorax


def test_positions_vary_between_images():
    for finding in ("Mass", "Nodule", "Pneumothorax", "Infiltration"):
        centres = []
        for seed in range(8):
            x, y, w, h = render_phantom((finding,), 128, np.random.default_rng(seed)).boxes[finding]
            centres.append(x + w / 2)
        sides = {c < 64 for c in centres}
        assert sides == {True, False}, f"{finding} always drawn on the same side"


def test_effusion_and_pneumothorax_take_opposite_sides():
    for seed in range(5):
        an = sample_anatomy(np.random.default_rng(seed))
        ph = render_phantom(("Pneumothorax", "Effusion"), 128, np.random.default_rng(seed), an)
        ex, _, ew, _ = ph.boxes["Effusion"]
        px, _, pw, _ = ph.boxes["Pneumothorax"]
        mid = an.cx * 128
        assert (ex + ew / 2 < mid) != (px + pw / 2 < mid)


def test_lower_zone_findings_sit_low_and_apical_ones_high():
    for seed in SEEDS:
        an, _, eff = _pair("Effusion", 128, seed)
        x, y, w, h = eff.boxes["Effusion"]
        assert y + h > 0.6 * 128  # at the base
        _, _, hern = _pair("Hernia", 128, seed)
        x, y, w, h = hern.boxes["Hernia"]
        assert abs(x + w / 2 - an.cx * 128) < 0.1 * 128  # near the midline
        assert 0.5 * 128 < y + h / 2 < an.dome_l * 128 + 2  # just above the diaphragm


def test_normal_chest_is_plausible():
    for seed in range(5):
        an = sample_anatomy(np.random.default_rng(seed))
        img = render_phantom((), 256, np.random.default_rng(seed), an).image
        lungs = [_patch(img, an.cx + s * 0.6 * an.hw, 0.42) for s in (-1, 1)]
        mediastinum = _patch(img, an.cx, 0.35, 0.015)
        below_diaphragm = _patch(img, an.cx - 0.3 * an.hw, an.dome_r + 0.15)
        corners = [float(img[:8, :8].mean()), float(img[:8, -8:].mean()),
                   float(img[-8:, :8].mean()), float(img[-8:, -8:].mean())]
        assert max(lungs) + 40 < mediastinum
        assert max(lungs) + 40 < below_diaphragm
        assert max(corners) + 60 < min(mediastinum, below_diaphragm)
        # heart bulges to the image right: at heart level, the bright (non-lung) run around the
        # midline reaches further to the image right than to the image left
        yy = int((an.dome_l - 0.06) * 256)
        row = img[yy - 3:yy + 4].astype(float).mean(0)
        c = int(an.cx * 256)
        thorax = row[int((an.cx - an.hw) * 256):int((an.cx + an.hw) * 256)]
        bright = row > (np.percentile(thorax, 5) + row[c]) / 2
        right = int(np.argmin(bright[c:]))
        left = int(np.argmin(bright[c::-1]))
        assert right > left


def test_follow_up_is_the_same_patient():
    rng = np.random.default_rng(9)
    an = sample_anatomy(rng)
    fu = jitter_anatomy(an, rng)
    assert fu != an and fu.texture_seed == an.texture_seed
    assert abs(fu.cx - an.cx) <= 0.011 and abs(fu.dome_r - an.dome_r) <= 0.035
    assert fu.heart_ctr == an.heart_ctr
    other = sample_anatomy(np.random.default_rng(10))
    size = 128
    base = render_phantom((), size, np.random.default_rng(0), an).image.astype(float)
    same = render_phantom((), size, np.random.default_rng(1), fu).image.astype(float)
    diff = render_phantom((), size, np.random.default_rng(1), other).image.astype(float)
    assert np.abs(base - same).mean() < np.abs(base - diff).mean()


def test_anatomy_is_frozen():
    an = sample_anatomy(np.random.default_rng(0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        an.cx = 0.3  # type: ignore[misc]
