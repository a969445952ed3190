"""Synthetic "phantom" frontal (PA) chest radiographs with the 14 ChestX-ray14 findings.

The phantoms stand in for NIH ChestX-ray14 in demos and tests: a normal chest (body outline, lung
fields with vascular markings, ribs, clavicles, spine, mediastinum and heart, hemidiaphragms) onto
which each finding is drawn as a distinct, learnable pattern in an anatomically sensible place,
with a tight pixel box around what was drawn. Bright is dense, dark is air; radiological
convention applies (the patient's left, and so the heart's bulge, is on the image right).

Rendering is vectorized NumPy (plus a few PIL line drawings), evaluated directly at the requested
size from normalized coordinates, and deterministic in the generator passed in. The finding
parameters come from per-finding child generators and the film noise from the caller's generator
after a fixed number of draws, so the same anatomy and generator state rendered with and without
a finding differ only where that finding was drawn.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from cxr_tf.core.errors import CxrConfigError
from cxr_tf.synth import _shapes as sh
from cxr_tf.synth._shapes import F32, ramp

log = logging.getLogger(__name__)

FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
            "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
            "Pleural_Thickening", "Hernia")

Box = tuple[float, float, float, float]  # pixel rectangle (x0, y0, x1, y1) while drawing


@dataclass(frozen=True)
class Anatomy:
    """One patient's body geometry and exposure, in normalized [0, 1] image coordinates.

    x grows to the image right, y downwards. "Right"/"left" in field names are the patient's
    (``dome_r`` is the image-left hemidiaphragm). Distances are fractions of the image width.
    """

    cx: float              # thorax midline
    hw: float              # half width of the thorax (inner rib margins)
    apex_y: float          # top of the lung apices
    dome_r: float          # right hemidiaphragm dome (image left; the higher one)
    dome_l: float          # left hemidiaphragm dome (image right)
    cdrop: float           # depth of the costophrenic angles below the domes
    dome_peak: float       # where the dome peaks, as a fraction of hw from the midline
    mediastinum: float     # half width of the upper mediastinum
    knob: float            # aortic knob bulge into the left lung
    hilum_y: float         # height of the hila
    heart_ctr: float       # heart width / thorax width (cardiothoracic ratio)
    heart_h: float         # heart height above its base
    heart_right: float     # fraction of the heart width right of the midline (image left)
    body_hw: float         # chest wall thickness: outline half width minus hw
    neck_hw: float         # half width of the neck
    shoulder_y: float      # height where the shoulders reach full width
    spine_w: float         # half width of the vertebral bodies
    vert_h: float          # height of one vertebra
    rib_spacing: float     # vertical distance between upper posterior ribs
    rib_curve: float       # how much the posterior ribs bend down laterally
    rib_phase: float       # rib pattern offset (fraction of a rib period)
    clavicle_y: float      # height of the medial clavicle ends
    clavicle_slope: float  # rise of the clavicles towards the shoulders
    lung_dark: float       # how much lung air darkens the image
    tissue: float          # soft-tissue density scale
    exposure: float        # brightness offset (positive: darker film)
    contrast: float        # window width scale (larger: flatter)
    gamma: float           # display gamma
    grad_x: float          # exposure gradient across the image
    grad_y: float          # exposure gradient down the image
    noise: float           # film noise standard deviation (fraction of full scale)
    bubble: float          # gastric air bubble size (0: none)
    texture_seed: int      # seed of the patient's vascular tree and lung texture


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """A random patient's anatomy."""
    u = rng.uniform
    dome_r = u(0.66, 0.72)
    return Anatomy(
        cx=u(0.485, 0.515), hw=u(0.35, 0.4), apex_y=u(0.10, 0.14), dome_r=dome_r,
        dome_l=dome_r + u(0.012, 0.035), cdrop=u(0.065, 0.09), dome_peak=u(0.38, 0.5),
        mediastinum=u(0.075, 0.09), knob=u(0.012, 0.028), hilum_y=u(0.38, 0.43),
        heart_ctr=u(0.40, 0.48), heart_h=u(0.22, 0.27), heart_right=u(0.3, 0.38),
        body_hw=u(0.055, 0.085), neck_hw=u(0.07, 0.095), shoulder_y=u(0.14, 0.2),
        spine_w=u(0.028, 0.036), vert_h=u(0.042, 0.05), rib_spacing=u(0.05, 0.06),
        rib_curve=u(0.12, 0.17), rib_phase=u(0.0, 1.0), clavicle_y=u(0.18, 0.22),
        clavicle_slope=u(0.2, 0.3), lung_dark=u(0.36, 0.42), tissue=u(0.93, 1.07),
        exposure=u(-0.04, 0.04), contrast=u(0.92, 1.08), gamma=u(0.85, 1.15),
        grad_x=u(-0.06, 0.06), grad_y=u(-0.08, 0.04), noise=u(0.012, 0.025),
        bubble=u(0.02, 0.045) if rng.random() < 0.75 else 0.0,
        texture_seed=int(rng.integers(0, 2**31 - 1)))


def jitter_anatomy(anatomy: Anatomy, rng: np.random.Generator) -> Anatomy:
    """The same patient at a follow-up visit: small changes in position/inspiration/exposure."""
    a, u = anatomy, rng.uniform
    dy, breath = u(-0.012, 0.012), u(-0.02, 0.02)
    shift = {k: getattr(a, k) + dy for k in ("apex_y", "hilum_y", "shoulder_y", "clavicle_y")}
    return dataclasses.replace(
        a, **shift, cx=a.cx + u(-0.01, 0.01), hw=a.hw * u(0.99, 1.01),
        dome_r=a.dome_r + dy + breath, dome_l=a.dome_l + dy + breath + u(-0.005, 0.005),
        exposure=a.exposure + u(-0.03, 0.03), contrast=a.contrast * u(0.96, 1.04),
        gamma=a.gamma * u(0.96, 1.04), grad_x=a.grad_x + u(-0.02, 0.02),
        grad_y=a.grad_y + u(-0.02, 0.02), noise=a.noise * u(0.9, 1.1),
        bubble=max(0.0, a.bubble + u(-0.008, 0.008)) if a.bubble else 0.0)


@dataclass(frozen=True)
class Phantom:
    """A rendered phantom: uint8 grayscale ``image`` of shape (size, size) and ``boxes`` mapping
    each drawn finding to its (x, y, w, h) box in pixels of this image."""

    image: np.ndarray
    boxes: dict[str, tuple[float, float, float, float]]


# ------------------------------------------------------------------------------------ helpers
def _side(rng, ctx: dict, avoid: str | None = None) -> int:
    """A random side, or the side opposite to the one ``avoid`` already took."""
    taken = ctx.get(avoid) if avoid else None
    return -taken if taken else (1 if rng.random() < 0.5 else -1)


# ----------------------------------------------------------------------------------- findings
def _atelectasis(c, rng, ctx) -> Box:
    """Plate-like band in a lower zone above the (raised) hemidiaphragm; box adds volume loss."""
    an, s = c.an, ctx["Atelectasis"]
    d, m = sh.dome(an, s), an.mediastinum
    xc, y0, _ = sh.lung_point(c, rng, s, (0.72, 0.85), (0.45, 0.65), 0.03)
    o = float(sh.lung_outer(an, y0))
    half, th = rng.uniform(0.22, 0.32) * (o - m), max(rng.uniform(0.012, 0.017), 1.3 / c.size)
    ang, bow = rng.uniform(-0.3, 0.3), rng.uniform(-0.6, 0.6)
    w = c.win(xc - half - 0.02, y0 - half * 0.4 - 0.03, xc + half + 0.02, y0 + half * 0.4 + 0.03)
    dx, dy = w.xs - F32(xc), w.ys - F32(y0)
    along = dx * F32(math.cos(ang)) + dy * F32(math.sin(ang))
    across = dy * F32(math.cos(ang)) - dx * F32(math.sin(ang)) - F32(bow) * np.square(along)
    alpha = ramp(F32(th) - np.abs(across), -c.eps, c.eps) * ramp(F32(half) - np.abs(along), 0, 0.02)
    box = sh.opacity(c, w, 0.9 * alpha, 0.08)
    # volume loss: the raised hemidiaphragm moved the lung base (compare to the original lung)
    base = ctx["base"]
    lo, hi = sorted((an.cx + s * m * 0.9, an.cx + s * (an.hw + 0.02)))
    w2 = c.win(lo, d - 0.01, hi, sh.dome(base, s) + base.cdrop + 0.02)
    if not w2.empty:
        old = sh.lung_mask(c, sh.lung_f(base, w2.xs, w2.ys, s)) * c.heart_free(w2)
        diff = np.abs(old - c.lung[w2.sl]) > 0.25
        rows, cols = np.flatnonzero(diff.any(1)), np.flatnonzero(diff.any(0))
        if rows.size:
            box = sh.union(box, (w2.x0 + cols[0], w2.y0 + rows[0], w2.x0 + cols[-1] + 1.0,
                               w2.y0 + rows[-1] + 1.0))
    return box


def _effusion(c, rng, ctx) -> Box:
    """Homogeneous basal opacity with a meniscus rising laterally, one or both sides."""
    an, box = c.an, None
    sides = (ctx["Effusion"],) if ctx["Effusion"] else (-1, 1)
    for s in sides:
        d, m = sh.dome(an, s), an.mediastinum
        ymed, rise = d - rng.uniform(0.03, 0.13), rng.uniform(0.04, 0.09)
        w = c.win(an.cx + s * m * 0.8, ymed - rise - 0.04, an.cx + s * (an.hw + 0.02), d + an.cdrop + 0.02)
        fr = np.clip((np.abs(w.xs - F32(an.cx)) - F32(m)) * F32(1.0 / (an.hw - m)), 0.0, 1.0)
        top = F32(ymed) - F32(rise) * fr * fr
        box = sh.union(box, sh.opacity(c, w, ramp(w.ys - top, 0.0, 0.025), 0.07))
    return box


def _infiltration(c, rng, ctx) -> Box:
    """Several patchy, ill-defined blotches clustered in one lung zone."""
    zone = rng.choice(((0.15, 0.4), (0.35, 0.65), (0.55, 0.82)))
    x, y, s = sh.lung_point(c, rng, 0, zone, (0.3, 0.75), 0.06)
    n = int(rng.integers(3, 6))
    pts = [(x + rng.uniform(-0.06, 0.06), y + rng.uniform(-0.06, 0.06), rng.uniform(0.014, 0.022))
           for _ in range(n)]
    w = c.win(x - 0.13, y - 0.13, x + 0.13, y + 0.13)
    acc = np.zeros((w.y1 - w.y0, w.x1 - w.x0), F32)
    for px, py, sg in pts:
        acc = np.maximum(acc, rng.uniform(0.45, 0.65) * np.exp(-0.5 * sh.blob(w, px, py, sg, sg * 1.2)))
    tex = sh.noise_field(rng, w, 0.015)
    return sh.opacity(c, w, acc * np.clip(0.8 + 0.25 * tex, 0.4, 1.0), 0.05)


def _round_lesion(c, rng, r: float, edge: float, alpha: float, extra: float, lobes: float) -> Box:
    """A round/lobulated opacity of radius ``r`` fully inside a lung."""
    x, y, s = sh.lung_point(c, rng, 0, (0.2, 0.75), (0.25, 0.8), r * 1.2)
    w = c.win(x - 1.4 * r, y - 1.4 * r, x + 1.4 * r, y + 1.4 * r)
    dx, dy = w.xs - F32(x), w.ys - F32(y)
    rad, th = np.sqrt(dx * dx + dy * dy), np.arctan2(dy, dx)
    rr = F32(r) * (1.0 + sum(lobes * rng.uniform(0.3, 1.0) * np.cos(k * th + rng.uniform(0, 6.3))
                             for k in (2, 3, 5)))
    a = np.clip((rr - rad) * F32(1.0 / edge) + 0.5, 0.0, 1.0) * (0.85 + 0.15 * ramp(rr - rad, 0, r))
    return sh.opacity(c, w, alpha * a, extra)


def _mass(c, rng, ctx) -> Box:
    """Single large dense round/lobulated opacity (12-20 % of the thorax width)."""
    r = 0.5 * rng.uniform(0.12, 0.2) * 2 * c.an.hw
    return _round_lesion(c, rng, r, max(0.006, 1.2 / c.size), 0.95, 0.14, 0.07)


def _nodule(c, rng, ctx) -> Box:
    """Single small dense, well-defined round opacity."""
    r = 0.5 * max(0.032, rng.uniform(0.03, 0.06) * 2 * c.an.hw)
    return _round_lesion(c, rng, r, max(0.003, 0.8 / c.size), 1.0, 0.22, 0.0)


def _pneumonia(c, rng, ctx) -> Box:
    """Fluffy, mottled airspace opacity filling much of one lobe."""
    zone = rng.choice(((0.2, 0.4), (0.45, 0.6), (0.6, 0.75)))
    x, y, s = sh.lung_point(c, rng, 0, zone, (0.35, 0.65), 0.06)
    rx, ry = rng.uniform(0.07, 0.1), rng.uniform(0.065, 0.09)
    w = c.win(x - 1.35 * rx, y - 1.35 * ry, x + 1.35 * rx, y + 1.35 * ry)
    d = np.sqrt(sh.blob(w, x, y, rx, ry)) + 0.22 * sh.noise_field(rng, w, 0.05)
    env = ramp(1.0 - d, 0.0, 0.3)
    mottle = np.clip(0.5 + 0.6 * sh.noise_field(rng, w, 0.014), 0.0, 1.0)
    return sh.opacity(c, w, env * (0.35 + 0.6 * mottle), 0.06)


def _pneumothorax(c, rng, ctx) -> Box:
    """Apical/lateral lucent crescent without lung markings, edged by a visceral pleural line."""
    an, s = c.an, ctx["Pneumothorax"]
    d, k = sh.dome(an, s), rng.uniform(0.72, 0.84)
    ylim = an.apex_y + rng.uniform(0.55, 0.8) * (d - an.apex_y)
    px = an.cx + s * an.mediastinum
    w = c.win(px - s * 0.01, an.apex_y - 0.02, an.cx + s * (an.hw + 0.02), ylim + 0.02)
    f1 = sh.lung_f(an, w.xs, w.ys, s)
    kk = 1.0 - F32(1.0 - k) * ramp(F32(ylim) - w.ys, 0.0, ylim - an.apex_y)  # collapse grows upwards
    f2 = sh.lung_f(an, px + (w.xs - F32(px)) / kk, ylim + (w.ys - F32(ylim)) / kk, s) * kk
    span = ylim - an.apex_y
    tail = ramp(F32(ylim) - w.ys, 0.12 * span, 0.2 * span)  # no faint sliver near ylim
    gap = np.clip(0.5 + f2 * F32(1 / c.eps), 0.0, 1.0) * c.lung[w.sl] * tail
    wl = max(0.0035, 0.9 / c.size)
    line = np.exp(-np.square(f2 * F32(1 / wl))) * ramp(-f1, 0.006, 0.016) * tail
    before = c.density(w)
    c.air[w.sl] *= 1.0 + 0.5 * gap
    c.vess[w.sl] *= 1.0 - gap
    c.dens[w.sl] += 0.2 * line
    return sh.delta_box(c, w, before)


def _consolidation(c, rng, ctx) -> Box:
    """Dense homogeneous lobar opacity with a sharp fissural border and air bronchograms."""
    an = c.an
    s = _side(rng, ctx)
    d, m = sh.dome(an, s), an.mediastinum
    upper = rng.random() < 0.4
    t = rng.uniform(0.38, 0.5) if upper else rng.uniform(0.38, 0.55)
    yf = an.apex_y + t * (d - an.apex_y)
    tilt = rng.uniform(-0.08, 0.08)
    if upper:
        y0, y1 = an.apex_y - 0.01, yf + 0.03
    else:
        y0, y1 = yf - 0.05, min(yf + rng.uniform(0.14, 0.2), d - 0.02)
    w = c.win(an.cx + s * m * 0.9, y0, an.cx + s * (an.hw + 0.01), y1 + 0.03)
    X = np.abs(w.xs - F32(an.cx))
    fiss = F32(yf) + F32(tilt) * (X - F32(0.5 * an.hw)) - w.ys
    if upper:
        alpha = ramp(fiss, -c.eps, c.eps)
    else:
        lower = F32(y1) + 0.015 * sh.noise_field(rng, w, 0.07) - w.ys
        alpha = ramp(-fiss, -c.eps, c.eps) * ramp(lower, 0.0, 0.035)
    # air bronchograms: dark branching tubes from the hilar side into the lobe
    h, wd = w.y1 - w.y0, w.x1 - w.x0
    img = Image.new("L", (wd, h), 0)
    dr = ImageDraw.Draw(img)
    lw = max(1, int(round(0.008 * c.size)))
    yc = 0.5 * (max(y0, an.apex_y + 0.04) + min(y1, yf + 0.12) if upper else yf + y1)
    for _ in range(int(rng.integers(2, 4))):
        x0, yy = an.cx + s * (m + 0.04), yc + rng.uniform(-0.04, 0.04)
        ang = math.atan2(rng.uniform(-0.5, 0.5), s)
        for _ in range(3):
            ang += rng.normal(0, 0.25)
            ln = rng.uniform(0.04, 0.07)
            x1, y1b = x0 + ln * math.cos(ang), yy + ln * math.sin(ang)
            twig = (x1 + 0.6 * ln * math.cos(ang + 0.6), y1b + 0.6 * ln * math.sin(ang + 0.6))
            for xa, ya, xb, yb in ((x0, yy, x1, y1b), (x1, y1b, *twig)):
                dr.line([((xa * c.size - w.x0), (ya * c.size - w.y0)),
                         ((xb * c.size - w.x0), (yb * c.size - w.y0))], fill=255, width=lw)
            x0, yy = x1, y1b
    if lw > 1:
        img = img.filter(ImageFilter.GaussianBlur(0.4 * lw))
    br = np.asarray(img, dtype=F32) * F32(1 / 255)
    return sh.opacity(c, w, 0.92 * alpha * (1.0 - 0.5 * br), 0.06)


def _edema(c, rng, ctx) -> Box:
    """Bilateral perihilar ("bat wing") haze plus Kerley B lines at the lung bases."""
    an, box = c.an, None
    for s in (-1, 1):
        hx, hy = an.cx + s * (an.mediastinum + 0.05), an.hilum_y + 0.03
        sx, sy = rng.uniform(0.07, 0.09), rng.uniform(0.08, 0.1)
        w = c.win(hx - 2.6 * sx, hy - 2.6 * sy, hx + 2.6 * sx, hy + 2.6 * sy)
        haze = np.exp(-0.5 * sh.blob(w, hx, hy, sx, sy))
        haze *= np.clip(0.8 + 0.25 * sh.noise_field(rng, w, 0.03), 0, 1)
        box = sh.union(box, sh.opacity(c, w, 0.72 * haze, 0.05))
        d = sh.dome(an, s)
        ys = [d - 0.02 - i * rng.uniform(0.016, 0.022) for i in range(int(rng.integers(4, 7)))]
        o = float(sh.lung_outer(an, d - 0.05))
        w = c.win(an.cx + s * (o - 0.07), min(ys) - 0.02, an.cx + s * (o + 0.01), d + 0.01)
        th = max(0.004, 0.75 / c.size)
        X = np.abs(w.xs - F32(an.cx))
        lines = np.zeros((w.y1 - w.y0, w.x1 - w.x0), F32)
        for yl in ys:
            ln = rng.uniform(0.025, 0.045)
            lines = np.maximum(lines, ramp(F32(th) - np.abs(w.ys - F32(yl)), -c.eps, c.eps)
                               * ramp(X - F32(o - ln), 0.0, 0.01))
        box = sh.union(box, sh.opacity(c, w, 0.8 * lines, 0.08))
    return box


def _emphysema(c, rng, ctx) -> Box:
    """Hyperinflated, hyperlucent lungs with sparse markings and a few bullae; box = lungs."""
    for _ in range(int(rng.integers(1, 3))):
        x, y, s = sh.lung_point(c, rng, 0, (0.08, 0.35), (0.4, 0.85), 0.04)
        r = rng.uniform(0.03, 0.05)
        w = c.win(x - r - 0.01, y - r - 0.01, x + r + 0.01, y + r + 0.01)
        d = np.sqrt(sh.blob(w, x, y, r, r))
        inside = np.clip((1.0 - d) * F32(r / c.eps) + 0.5, 0, 1) * c.lung[w.sl]
        c.air[w.sl] *= 1.0 + 0.15 * inside
        c.vess[w.sl] *= 1.0 - inside
        c.dens[w.sl] += 0.07 * np.exp(-np.square((d - 1.0) * F32(r / max(0.003, c.eps)))) * c.lung[w.sl]
    lw = c.lwin
    inside = c.lung[lw.sl] > 0.3
    rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    return (lw.x0 + cols[0], lw.y0 + rows[0], lw.x0 + cols[-1] + 1.0, lw.y0 + rows[-1] + 1.0)


def _fibrosis(c, rng, ctx) -> Box:
    """Coarse reticular (net-like) pattern in the lower, peripheral zones of one or both lungs."""
    an, box = c.an, None
    sides = (_side(rng, ctx),) if rng.random() < 0.75 else (-1, 1)
    for s in sides:
        d = sh.dome(an, s)
        top = an.apex_y + 0.42 * (d - an.apex_y)
        w = c.win(an.cx + s * (an.mediastinum + 0.3 * (an.hw - an.mediastinum)), top,
                  an.cx + s * (an.hw + 0.01), d + an.cdrop)
        xn = np.abs(w.xs - F32(an.cx)) * F32(1 / an.hw)
        env = ramp(w.ys, top, top + 0.12) * ramp(xn, 0.4, 0.7)
        cell = max(0.04, 5.0 / c.size)
        n1, n2 = sh.noise_field(rng, w, cell), sh.noise_field(rng, w, cell)
        net = np.maximum(ramp(0.22 - np.abs(n1), 0.0, 0.1), ramp(0.22 - np.abs(n2), 0.0, 0.1))
        box = sh.union(box, sh.opacity(c, w, env * (0.55 * net + 0.1), 0.05))
    return box


def _pleural_thickening(c, rng, ctx) -> Box:
    """Thick bright pleural rim along the lateral chest wall and/or an apical cap, one side."""
    an, s, box = c.an, _side(rng, ctx), None
    kind = rng.choice(3, p=(0.55, 0.25, 0.2))  # 0 lateral, 1 apical cap, 2 both
    d = sh.dome(an, s)
    if kind != 1:
        y0 = an.apex_y + rng.uniform(0.3, 0.5) * (d - an.apex_y)
        y1 = min(y0 + rng.uniform(0.18, 0.3), d)
        w = c.win(an.cx + s * an.hw * 0.7, y0, an.cx + s * (an.hw + 0.02), y1)
        wt = rng.uniform(0.02, 0.032) * (1 + 0.3 * sh.noise_field(rng, w, 0.06)[:, :1])
        rim = ramp(np.abs(w.xs - F32(an.cx)) - (sh.lung_outer(an, w.ys) - wt), -c.eps, c.eps)
        taper = ramp(w.ys, y0, y0 + 0.04) * ramp(F32(y1) - w.ys, 0.0, 0.04)
        box = sh.union(box, sh.opacity(c, w, rim * taper, 0.1))
    if kind != 0:
        w = c.win(an.cx + s * an.hw * 0.15, an.apex_y - 0.01, an.cx + s * an.hw, an.apex_y + 0.12)
        f = sh.lung_f(an, w.xs, w.ys, s)
        xn = np.abs(w.xs - F32(an.cx)) * F32(1 / an.hw)
        cap = ramp(f + F32(rng.uniform(0.022, 0.032)), -c.eps, c.eps) * ramp(xn, 0.25, 0.35)
        box = sh.union(box, sh.opacity(c, w, cap * ramp(F32(an.apex_y + 0.11) - w.ys, 0, 0.03), 0.1))
    return box


def _hernia(c, rng, ctx) -> Box:
    """Hiatal hernia: round retrocardiac density just above the diaphragm with an air-fluid level."""
    an = c.an
    ry = rng.uniform(0.045, 0.065)
    rx = ry * rng.uniform(1.0, 1.25)
    x, y = an.cx + rng.uniform(-0.01, 0.04), an.dome_l - ry * rng.uniform(0.7, 1.0)
    w = c.win(x - rx - 0.01, y - ry - 0.01, x + rx + 0.01, y + ry + 0.01)
    d = np.sqrt(sh.blob(w, x, y, rx, ry))
    inside = np.clip((1.0 - d) * F32(ry / c.eps) + 0.5, 0.0, 1.0)
    air = inside * ramp(F32(y + rng.uniform(-0.2, 0.25) * ry) - w.ys, -c.eps, c.eps)
    wall = np.exp(-np.square((d - 1.0) * F32(ry / max(0.004, c.eps))))
    before = c.density(w)
    c.dens[w.sl] += -0.32 * air + 0.06 * (inside - air) + 0.08 * wall
    return sh.delta_box(c, w, before)


_DRAW = {"Effusion": _effusion, "Pneumothorax": _pneumothorax, "Consolidation": _consolidation,
         "Pneumonia": _pneumonia, "Infiltration": _infiltration, "Atelectasis": _atelectasis,
         "Edema": _edema, "Fibrosis": _fibrosis, "Pleural_Thickening": _pleural_thickening,
         "Mass": _mass, "Nodule": _nodule, "Hernia": _hernia, "Emphysema": _emphysema}


# --------------------------------------------------------------------------------------- render
def _modify_anatomy(base: Anatomy, todo: set, rngs: dict, ctx: dict) -> tuple[Anatomy, dict]:
    """Anatomy changes of the findings that alter the body itself; returns (anatomy, layer scales)."""
    an, scales = base, {"L": 1.0, "vamp": 1.0}
    if "Emphysema" in todo:
        r = rngs["Emphysema"]
        low = r.uniform(0.05, 0.08)
        an = dataclasses.replace(an, dome_r=min(an.dome_r + low, 0.85), dome_l=min(an.dome_l + low, 0.87),
                                 cdrop=an.cdrop * 0.45, heart_ctr=an.heart_ctr * 0.9)
        scales = {"L": r.uniform(1.3, 1.42), "vamp": 0.35}
    if "Cardiomegaly" in todo:
        r = rngs["Cardiomegaly"]
        an = dataclasses.replace(an, heart_ctr=r.uniform(0.6, 0.68),
                                 heart_h=an.heart_h * r.uniform(1.1, 1.25))
    ctx["heart"] = an  # the heart stays put when one hemidiaphragm rises
    if "Atelectasis" in todo:
        r = rngs["Atelectasis"]
        s = ctx["Atelectasis"] = 1 if r.random() < 0.5 else -1
        up = r.uniform(0.02, 0.035)
        an = dataclasses.replace(an, **({"dome_l": an.dome_l - up} if s > 0 else {"dome_r": an.dome_r - up}))
    return an, scales


def render_phantom(findings, size: int, rng: np.random.Generator, anatomy: Anatomy | None = None) -> Phantom:
    """Render one frontal (PA) phantom with the given findings (any subset of FINDINGS,
    possibly empty = 'No Finding').

    ``findings``: names from :data:`FINDINGS` in any order (an unknown name raises
    ``ValueError``). ``size``: the side of the square image in pixels (at least 32). ``rng``: the
    only source of randomness; the same generator state and arguments give byte-identical
    output. ``anatomy``: the patient (drawn from ``rng`` when omitted). Returns the uint8 image
    and one (x, y, w, h) pixel box per requested finding, tight (about one pixel of margin)
    around what was drawn for it.
    """
    if findings is None or isinstance(findings, str):
        findings = () if findings is None else (findings,)
    todo = set()
    for f in findings:
        if f not in FINDINGS:
            raise CxrConfigError(f"unknown finding {f!r}; expected one of: {', '.join(FINDINGS)}")
        todo.add(f)
    size = int(size)
    if size < 32:
        raise CxrConfigError(f"must be at least 32 pixels, got {size}", key="size")
    base = anatomy if anatomy is not None else sample_anatomy(rng)
    seed = int(rng.integers(0, 2**62))  # one draw whatever the findings: the noise stays put
    rngs = {f: np.random.default_rng([seed, i]) for i, f in enumerate(FINDINGS) if f in todo}
    ctx: dict = {"base": base}
    an, scales = _modify_anatomy(base, todo, rngs, ctx)
    c = sh.Canvas(size, base.lung_dark * scales["L"])
    c.vamp *= scales["vamp"]
    c.an = an
    sh.draw_body(c, base)
    heart_box = sh.draw_lungs(c, an, ctx["heart"], sh.lung_window(c, an, base))
    sh.draw_ribs(c, base)
    sh.draw_spine_and_neck(c, base)
    sh.draw_bubble(c, base)
    sh.vessel_layer(base, c)
    # sides: effusion and pneumothorax on opposite sides when both are present
    if "Effusion" in todo:
        r = rngs["Effusion"]
        bilateral = r.random() < 0.2 and "Pneumothorax" not in todo
        ctx["Effusion"] = 0 if bilateral else (1 if r.random() < 0.5 else -1)
    if "Pneumothorax" in todo:
        ctx["Pneumothorax"] = _side(rngs["Pneumothorax"], ctx, "Effusion")
    boxes: dict[str, Box] = {}
    if "Cardiomegaly" in todo:
        boxes["Cardiomegaly"] = heart_box
    for name, draw in _DRAW.items():
        if name in todo:
            boxes[name] = draw(c, rngs[name], ctx)
    image = sh.compose(c, base, rng)
    out = {}
    for name in FINDINGS:
        if name in boxes:
            x0, y0, x1, y1 = boxes[name]
            x0, y0 = max(0.0, float(x0) - 1.0), max(0.0, float(y0) - 1.0)
            x1, y1 = min(float(size), float(x1) + 1.0), min(float(size), float(y1) + 1.0)
            out[name] = (x0, y0, max(x1 - x0, 1.0), max(y1 - y0, 1.0))
    log.debug("rendered phantom %dpx with %s", size, sorted(out) or "No Finding")
    return Phantom(image=image, boxes=out)
