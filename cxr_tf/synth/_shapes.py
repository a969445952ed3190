"""Drawing helpers and the normal-anatomy layers of the phantom chest radiographs (internal).

Everything works in normalized image coordinates (x to the right, y downwards, both in [0, 1]) and
is evaluated directly at the requested pixel size, on separable coordinate vectors (``xs`` of shape
``(1, w)``, ``ys`` of shape ``(h, 1)``) restricted to a window wherever a structure is local.

The image is composed from three layers of a :class:`Canvas`:

* ``dens``: density of soft tissue, bone and fluid (bright);
* ``air``: how much lung air a pixel holds (0 outside the lungs, 1 in normal lung);
* ``vess``: vascular markings and parenchymal texture, only visible through lung air.

and the density of a pixel is ``dens - air * (L - vamp * vess)``. Findings edit these layers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

F32 = np.float32
Box = tuple[float, float, float, float]  # pixel rectangle (x0, y0, x1, y1) while drawing


def ramp(v, lo: float, hi: float):
    """Linear ramp from 0 (at ``lo``) to 1 (at ``hi``), clipped."""
    return np.clip((v - lo) * (1.0 / (hi - lo)), 0.0, 1.0)


def upsample(small: np.ndarray, h: int, w: int, resample=Image.BICUBIC) -> np.ndarray:
    """Resize a small float32 array to ``(h, w)`` with PIL (smooth interpolation)."""
    img = Image.fromarray(np.ascontiguousarray(small, dtype=F32))
    return np.array(img.resize((max(w, 1), max(h, 1)), resample), dtype=F32)


def noise_field(rng: np.random.Generator, win: "Win", cell: float) -> np.ndarray:
    """Smooth zero-mean random field over a window with features of about ``cell`` (normalized)."""
    gh = max(2, int(round((win.y1 - win.y0) / win.n / cell)) + 1)
    gw = max(2, int(round((win.x1 - win.x0) / win.n / cell)) + 1)
    return upsample(rng.standard_normal((gh, gw)).astype(F32), win.y1 - win.y0, win.x1 - win.x0)


class Win:
    """A pixel window of a canvas given by a normalized rectangle (clipped to the image)."""

    __slots__ = ("n", "x0", "y0", "x1", "y1", "xs", "ys", "sl")

    def __init__(self, c: "Canvas", x0: float, y0: float, x1: float, y1: float):
        n = self.n = c.size
        self.x0, self.x1 = max(0, math.floor(min(x0, x1) * n)), min(n, math.ceil(max(x0, x1) * n))
        self.y0, self.y1 = max(0, math.floor(min(y0, y1) * n)), min(n, math.ceil(max(y0, y1) * n))
        self.x1, self.y1 = max(self.x1, self.x0), max(self.y1, self.y0)
        self.xs = c.x[:, self.x0:self.x1]
        self.ys = c.y[self.y0:self.y1, :]
        self.sl = (slice(self.y0, self.y1), slice(self.x0, self.x1))

    @property
    def empty(self) -> bool:
        """Whether the window holds no pixel."""
        return self.x1 <= self.x0 or self.y1 <= self.y0

    def rect(self) -> tuple[float, float, float, float]:
        """The window as a pixel rectangle ``(x0, y0, x1, y1)``."""
        return float(self.x0), float(self.y0), float(self.x1), float(self.y1)


class Canvas:
    """The layers of one image being drawn at ``size`` pixels."""

    def __init__(self, size: int, lung_dark: float):
        self.size = size
        grid = (np.arange(size, dtype=F32) + F32(0.5)) / F32(size)
        self.x, self.y = grid[None, :], grid[:, None]
        self.eps = max(1.0 / size, 0.002)  # edge softness (normalized)
        self.dens = None
        self.air = self.lung = self.vess = self.lwin = self.heart = self.an = None
        self.L, self.vamp = float(lung_dark), 0.15

    def win(self, x0: float, y0: float, x1: float, y1: float) -> Win:
        """Window of the normalized rectangle spanned by (x0, y0) and (x1, y1)."""
        return Win(self, x0, y0, x1, y1)

    def density(self, w: Win) -> np.ndarray:
        """Composite density inside a window."""
        s = w.sl
        return self.dens[s] - self.air[s] * (self.L - self.vamp * self.vess[s])

    def heart_free(self, w: Win) -> np.ndarray:
        """1 - heart mask over a window (1 where the heart is not)."""
        out = np.ones((w.y1 - w.y0, w.x1 - w.x0), F32)
        hw_, hm = self.heart
        y0, y1, x0, x1 = max(w.y0, hw_.y0), min(w.y1, hw_.y1), max(w.x0, hw_.x0), min(w.x1, hw_.x1)
        if y1 > y0 and x1 > x0:
            inner = hm[y0 - hw_.y0:y1 - hw_.y0, x0 - hw_.x0:x1 - hw_.x0]
            out[y0 - w.y0:y1 - w.y0, x0 - w.x0:x1 - w.x0] = 1.0 - inner
        return out

    def sample(self, arr: np.ndarray, x: float, y: float) -> float:
        """Value of a full-size layer at a normalized point (nearest pixel)."""
        n = self.size
        return float(arr[min(n - 1, max(0, int(y * n))), min(n - 1, max(0, int(x * n)))])


# -------------------------------------------------------------------------------- finding helpers
def union(a: Box | None, b: Box) -> Box:
    """Smallest pixel rectangle holding both (``a`` may be None)."""
    return b if a is None else (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def delta_box(c: Canvas, w: Win, before: np.ndarray) -> Box:
    """Box around where the composite density of window ``w`` changed from ``before``."""
    d = np.abs(c.density(w) - before)
    peak = float(d.max()) if d.size else 0.0
    if peak < 1e-4:
        return w.rect()
    m = d > max(0.05 * peak, 0.01)
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    return (w.x0 + cols[0], w.y0 + rows[0], w.x0 + cols[-1] + 1.0, w.y0 + rows[-1] + 1.0)


def opacity(c: Canvas, w: Win, alpha: np.ndarray, extra: float = 0.05) -> Box:
    """Replace lung air by tissue/fluid with opacity ``alpha`` in a window; return its box."""
    before = c.density(w)
    c.dens[w.sl] += (extra * alpha) * c.lung[w.sl]
    c.air[w.sl] *= 1.0 - alpha
    return delta_box(c, w, before)


def lung_point(c: Canvas, rng, side: int, t: tuple, u: tuple, r: float):
    """A point (x, y, side) in a lung zone (``t`` apex→base, ``u`` medial→lateral fractions)
    whose disc of radius ``r`` lies in aerated lung; the best of a few tries."""
    an, best = c.an, (-1.0, None)
    for _ in range(24):
        s = side or (1 if rng.random() < 0.5 else -1)
        y = an.apex_y + rng.uniform(*t) * (dome(an, s) - an.apex_y)
        o = float(lung_outer(an, y))
        x = an.cx + s * (an.mediastinum + rng.uniform(*u) * (o - an.mediastinum))
        ring = [c.sample(c.air, x + r * math.cos(a), y + r * math.sin(a))
                for a in np.linspace(0, 2 * math.pi, 8, endpoint=False)]
        score = min(ring + [c.sample(c.air, x, y)])
        if score > 0.6:
            return x, y, s
        if score > best[0]:
            best = (score, (x, y, s))
    return best[1]


def blob(w: Win, x: float, y: float, rx: float, ry: float) -> np.ndarray:
    """Squared normalized elliptical radius around (x, y) over a window."""
    return np.square((w.xs - F32(x)) * F32(1 / rx)) + np.square((w.ys - F32(y)) * F32(1 / ry))


# ----------------------------------------------------------------------------------- lung shape
def dome(an: Any, side: int) -> float:
    """Dome height of the hemidiaphragm of an image side (-1 image left = patient right, +1)."""
    return an.dome_l if side > 0 else an.dome_r


def lung_outer(an: Any, y):
    """Lateral lung border (distance from the midline) at height ``y``."""
    tt = np.clip((y - an.apex_y) * (1.0 / 0.34), 0.0, 1.0)
    return an.hw * (0.55 + 0.45 * (1.0 - (1.0 - tt) ** 2))


def diaphragm(an: Any, X, side):
    """Diaphragm height at lateral distance ``X`` from the midline (``side`` scalar or array)."""
    xn = X / an.hw
    pk = an.dome_peak
    lat = np.maximum(xn - pk, 0.0) / (1.0 - pk)
    med = np.maximum(pk - xn, 0.0) / pk
    d = np.where(side > 0, F32(an.dome_l), F32(an.dome_r))
    return (d + an.cdrop * lat * lat + 0.3 * an.cdrop * med * med).astype(F32)


def lung_f(an: Any, xs: np.ndarray, ys: np.ndarray, side: int = 0, parts: bool = False):
    """Signed implicit function of the lung fields (negative inside, about a distance).

    ``side`` forces one lung (-1 image left, +1 image right); 0 picks by the midline. With
    ``parts`` also return the lateral/apical part alone (the distance to the chest wall)."""
    dx = xs - F32(an.cx)
    if side:
        X, left = dx * F32(side), np.full(dx.shape, side > 0)
    else:
        X, left = np.abs(dx), dx > 0
    xn = X / F32(an.hw)
    yd = diaphragm(an, X, left)
    ytop = (an.apex_y + 0.09 * ((xn - 0.52) / 0.34) ** 2).astype(F32)
    o = lung_outer(an, ys).astype(F32)
    knob = (an.knob * np.exp(-(((ys - an.apex_y - 0.16) / 0.035) ** 2))).astype(F32)
    m = F32(an.mediastinum) + knob * left
    wall = np.maximum(X - o, ytop - ys)
    f = np.maximum(np.maximum(m - X, ys - yd), wall)
    return (f, wall) if parts else f


def lung_mask(c: Canvas, f: np.ndarray) -> np.ndarray:
    """Soft 0..1 mask from an implicit function."""
    return np.clip(0.5 - f * (1.0 / c.eps), 0.0, 1.0)


def heart_geometry(an: Any) -> tuple:
    """Cardiac silhouette as two quarter ellipses growing out of the mediastinum: their anchor
    distance from the midline, widths (image left, image right), heights and widest heights.

    Its total width is ``heart_ctr * 2 * hw``, ``heart_right`` of it right of the midline
    (image left); the left ventricle (image right) is widest just above the left hemidiaphragm."""
    w = an.heart_ctr * 2.0 * an.hw
    x0 = an.mediastinum - 0.03
    axl = max(w * an.heart_right - x0, 0.04)
    axr = w - 2 * x0 - axl
    return x0, axl, axr, 0.7 * an.heart_h, an.heart_h, an.dome_r - 0.05, an.dome_l - 0.035


# --------------------------------------------------------------------------------- normal layers
def draw_body(c: Canvas, an: Any) -> None:
    """Soft tissue of neck, shoulders, chest and abdomen (thicker, hence brighter, centrally).

    Starts the density layer (in place arithmetic: allocating full-size temporaries is the
    dominant cost at 1024 px)."""
    y = c.y
    sh = ramp(y, 0.015, an.shoulder_y)
    sh = sh * sh * (3.0 - 2.0 * sh)
    bhw = an.neck_hw + (an.hw + an.body_hw + 0.05 - an.neck_hw) * sh
    bhw = bhw - 0.05 * ramp(y, an.shoulder_y + 0.05, 0.4) - 0.07 * ramp(y, 0.72, 1.0)
    t = np.multiply(c.x - F32(an.cx), (1.0 / bhw).astype(F32))
    np.square(t, out=t)
    np.subtract(F32(1.0), t, out=t)
    np.maximum(t, F32(0.0), out=t)
    dens = np.sqrt(t)
    dens += t
    dens *= (an.tissue * 0.21 * (1.0 + 0.1 * ramp(y, 0.4, 0.75))).astype(F32)
    t *= F32(0.5 / (c.eps + 0.004))
    np.minimum(t, F32(1.0), out=t)
    t *= F32(an.tissue * 0.26)
    dens += t
    c.dens = dens


def lung_window(c: Canvas, *anatomies: Any) -> Win:
    """Window holding the lungs of all the given anatomies (same patient), with a margin."""
    an = anatomies[0]
    low = max(max(a.dome_r, a.dome_l) + a.cdrop for a in anatomies)
    return c.win(an.cx - an.hw - 0.03, an.apex_y - 0.03, an.cx + an.hw + 0.03, low + 0.03)


def _lungs_into(c: Canvas, an: Any, lw: Win, lung: np.ndarray, prof: np.ndarray) -> None:
    """Fill the lung mask and the air profile (lighter near the chest wall) of the lung window,
    one side at a time with scalar parameters and in-place arithmetic."""
    ys = lw.ys
    o = lung_outer(an, ys).astype(F32)
    knob = (an.knob * np.exp(-(((ys - an.apex_y - 0.16) / 0.035) ** 2))).astype(F32)
    k = int(np.searchsorted(lw.xs[0], F32(an.cx), side="right"))
    for side, cols in ((-1, slice(0, k)), (1, slice(k, lw.x1 - lw.x0))):
        if cols.stop <= cols.start:
            continue
        X = (lw.xs[:, cols] - F32(an.cx)) * F32(side)
        xn = X / F32(an.hw)
        yd = diaphragm(an, X, side)
        ytop = (an.apex_y + 0.09 * ((xn - 0.52) / 0.34) ** 2).astype(F32)
        m = F32(an.mediastinum) + knob * F32(side > 0)
        wall = np.subtract(X, o)
        t = np.subtract(ytop, ys)
        np.maximum(wall, t, out=wall)
        np.subtract(ys, yd, out=t)
        f = np.subtract(m, X)
        np.maximum(f, t, out=f)
        np.maximum(f, wall, out=f)
        out = lung[:, cols]
        np.multiply(f, F32(-1.0 / c.eps), out=out)
        out += F32(0.5)
        np.clip(out, 0.0, 1.0, out=out)
        pr = prof[:, cols]
        np.multiply(wall, F32(-1.0 / 0.07), out=pr)
        np.clip(pr, 0.0, 1.0, out=pr)
        pr *= F32(0.45)
        pr += F32(0.55)


def draw_lungs(c: Canvas, an: Any, heart_an: Any, lw: Win) -> tuple:
    """Lung air (darker centrally, heart excluded) and the heart (of ``heart_an``, which may
    differ in its diaphragm) inside the lung window; returns the heart's pixel box."""
    n = c.size
    c.lwin, c.lung, c.air = lw, np.zeros((n, n), F32), np.zeros((n, n), F32)
    lung, prof = c.lung[lw.sl], c.air[lw.sl]
    _lungs_into(c, an, lw, lung, prof)
    lung = c.lung
    m, axl, axr, ayl, ayr, ywl, ywr = heart_geometry(heart_an)
    w = c.win(an.cx - m - axl - 0.01, min(ywl - ayl, ywr - ayr) - 0.01, an.cx + m + axr + 0.01,
              max(an.dome_l, an.dome_r) + an.cdrop + 0.02)
    right = w.xs > F32(an.cx)
    ax = np.where(right, F32(axr), F32(axl))
    u = np.maximum(np.abs(w.xs - F32(an.cx)) - F32(m), 0.0) / ax
    # above its widest point each side is a quarter ellipse; below it curves back in to a
    # rounded apex that meets the diaphragm at an acute cardiophrenic angle
    vl = np.maximum(F32(ywl) - w.ys, 0.0) * F32(1 / ayl) + np.maximum(w.ys - F32(ywl), 0.0) * F32(1 / 0.11)
    vr = np.maximum(F32(ywr) - w.ys, 0.0) * F32(1 / ayr) + np.maximum(w.ys - F32(ywr), 0.0) * F32(1 / 0.09)
    v = np.where(right, vr, vl)
    r = np.power(np.power(u, F32(1.7)) + np.power(v, F32(1.7)), F32(1 / 1.7))  # sloping shoulders
    hm = np.clip((1.0 - r) * (ax * F32(1 / c.eps)) + 0.5, 0.0, 1.0)
    before = lung[w.sl].copy()
    lung[w.sl] *= 1.0 - hm
    c.heart = (w, hm)
    base = F32(max(an.dome_l, an.dome_r))
    vis = (hm > 0.5) & ((before > 0.5) | (w.ys < base))
    rows, cols = np.flatnonzero(vis.any(1)), np.flatnonzero(vis.any(0))
    if rows.size:
        box = (w.x0 + cols[0], w.y0 + rows[0], w.x0 + cols[-1] + 1.0, w.y0 + rows[-1] + 1.0)
    else:
        box = w.rect()
    c.air[lw.sl] *= c.lung[lw.sl]
    return box


def _band_lut(period: float, duty: float, edge: float, grow: float, n: int, origin: float = 0.0,
              phase: float = 0.0) -> np.ndarray:
    """One rib family as a function of the (curved) coordinate: a 1-D table of ``n`` entries;
    periods (of ``period`` entries at ``origin``) widen downwards by ``grow``."""
    zs = (np.arange(n) - origin) * (1.0 / period)
    p = zs - grow * zs * np.maximum(zs, 0.0) + phase
    fr = p - np.floor(p)
    return np.clip(np.minimum(fr, duty - fr) / edge, 0.0, 1.0) * (0.6 + 1.2 * fr)


def draw_ribs(c: Canvas, an: Any) -> None:
    """Posterior ribs (arcs bending down laterally, wider spaced downwards) and anterior ribs.

    Each family is a function of one curved coordinate, tabulated once and looked up."""
    bottom = max(an.dome_r, an.dome_l) + an.cdrop + 0.03
    top = an.apex_y - 0.06
    w = c.win(an.cx - an.hw * 1.12, top, an.cx + an.hw * 1.12, bottom)
    if w.empty:
        return
    res = 4 * c.size  # table entries per unit of the coordinate
    xn = np.abs(w.xs - F32(an.cx)) * F32(1.0 / an.hw)
    g = an.rib_curve * (1.2 * xn * xn * xn + 0.5 * xn * xn - 0.8 * xn)
    e = max(0.4 * c.eps, 0.3 * c.eps + 0.0012) / an.rib_spacing
    shift = an.rib_curve * 2.0
    lut = _band_lut(an.rib_spacing * res, 0.34, e, 0.02, int((1.0 + 2 * shift) * res) + 8,
                    (shift + 0.01) * res, an.rib_phase)
    idx = ((w.ys - F32(top - shift)) * F32(res)).astype(np.int32) - (g * res).astype(np.int32)
    band = np.take(lut.astype(F32) * F32(0.065), idx)
    band *= (ramp(xn, 0.1, 0.25) * ramp(1.12 - xn, 0.0, 0.1)).astype(F32)
    # anterior ribs: slope down towards the midline, fainter, over the lateral two thirds
    lut2 = _band_lut(1.6 * an.rib_spacing * res, 0.28, 2 * e, 0.0, int(1.4 * res) + 8)
    idx = ((w.ys - F32(top)) * F32(res)).astype(np.int32) + (0.2 * xn * xn * res).astype(np.int32)
    band2 = np.take(lut2.astype(F32) * F32(0.035 / 1.6), idx)
    band2 *= (ramp(xn, 0.3, 0.55) * ramp(1.05 - xn, 0.0, 0.1)).astype(F32)
    band2 *= ramp(F32(0.62) - w.ys, 0, 0.1)
    band += band2
    band *= ramp(F32(bottom) - w.ys, 0.0, 0.1)
    c.dens[w.sl] += band


def draw_spine_and_neck(c: Canvas, an: Any) -> None:
    """Spine with vertebral bodies and disc spaces, the tracheal air column and the clavicles."""
    sw = an.spine_w
    w = c.win(an.cx - sw - 0.01, 0.0, an.cx + sw + 0.01, 1.0)
    dx = np.abs(w.xs - F32(an.cx))
    col = ramp(F32(sw) - dx, 0.0, 0.012) * (0.7 + 0.3 * ramp(dx, 0.0, sw))
    ped = np.exp(-np.square((dx - F32(0.7 * sw)) * F32(1.0 / (0.18 * sw)))) * 0.5
    yy = (w.ys - 0.05) * F32(1.0 / an.vert_h)
    yy = yy + 0.004 * yy * yy
    fr = yy - np.floor(yy)
    disc = ramp(np.abs(fr - 0.5), 0.33, 0.43)
    c.dens[w.sl] += (0.06 * col * (1.0 - 0.35 * disc) + 0.035 * ped * (1.0 - disc)) * ramp(w.ys, 0.0, 0.08)
    carina = an.hilum_y - 0.06
    w = c.win(an.cx - 0.03, 0.0, an.cx + 0.03, carina + 0.02)
    tr = ramp(F32(0.015) - np.abs(w.xs - F32(an.cx)), 0.0, 0.006) * ramp(F32(carina) - w.ys, 0.0, 0.05)
    c.dens[w.sl] -= 0.13 * tr
    cy = an.clavicle_y
    w = c.win(an.cx - 0.46, cy - 0.12, an.cx + 0.46, cy + 0.05)
    X = np.abs(w.xs - F32(an.cx))
    yc = (cy - an.clavicle_slope * (X - 0.03) + 0.6 * np.square(X - 0.2) - 0.02).astype(F32)
    thick = (0.013 + 0.006 * ramp(0.1 - X, 0.0, 0.06)).astype(F32)
    band = ramp(thick - np.abs(w.ys - yc), 0.0, c.eps + 0.002)
    env = ramp(X, 0.025, 0.05) * ramp(F32(0.44) - X, 0.0, 0.04)
    c.dens[w.sl] += 0.17 * band * env


def draw_bubble(c: Canvas, an: Any) -> None:
    """Gastric air bubble under the left hemidiaphragm (image right)."""
    if an.bubble <= 0.0:
        return
    bx, by = an.cx + 0.5 * an.hw, an.dome_l + 0.02 + 0.6 * an.bubble
    rx, ry = 1.4 * an.bubble, an.bubble
    w = c.win(bx - rx - 0.01, by - ry - 0.01, bx + rx + 0.01, by + 0.01)
    d = np.square((w.xs - F32(bx)) / F32(rx)) + np.square((w.ys - F32(by)) / F32(ry))
    m = np.clip((1.0 - d) * F32(ry / (2 * c.eps)), 0.0, 1.0) * ramp(F32(by) - w.ys, -c.eps, c.eps)
    c.dens[w.sl] -= 0.2 * m


def _walk(rng, x0, y0, s, ang0, length, k: int):
    """Random-walk branches from (x0, y0) (arrays of m starts): points (m, k+1, 2), angles (m, k)."""
    ang = ang0[:, None] + np.cumsum(rng.normal(0.0, 0.16, (x0.size, k)), 1)
    step = (length / k)[:, None]
    pts = np.empty((x0.size, k + 1, 2))
    pts[:, 0, 0], pts[:, 0, 1] = x0, y0
    pts[:, 1:, 0] = x0[:, None] + np.cumsum(s[:, None] * np.cos(ang) * step, 1)
    pts[:, 1:, 1] = y0[:, None] + np.cumsum(np.sin(ang) * step, 1)
    return pts, ang


def _there_and_back(p: np.ndarray) -> np.ndarray:
    """Polyline points out to the tip and back (axis -2)."""
    return np.concatenate([p, p[..., -2::-1, :]], -2)


def vessel_layer(an: Any, c: Canvas) -> None:
    """Vascular markings branching from both hila plus parenchymal texture (0..~1) in the lung
    window of the canvas (zero elsewhere).

    Drawn with PIL at up to 256 px from the patient's own texture seed, one polyline per side and
    branch order (it runs out along each branch and back along its parents), blurred, resized."""
    size, lw = c.size, c.lwin
    vr = min(size, 320)
    rng = np.random.default_rng(an.texture_seed)
    n = 9
    s = np.repeat([-1.0, 1.0], n)
    hx = an.cx + s * (an.mediastinum + 0.02)
    hy = an.hilum_y - 0.015 * (s > 0)
    ln = rng.uniform(0.2, 0.3, 2 * n)
    a0 = np.tile(np.linspace(-1.3, 1.45, n), 2) + rng.normal(0.0, 0.1, 2 * n)
    main, ang = _walk(rng, hx, hy, s, a0, ln, 6)                     # (2n, 7, 2)
    j = np.array([1, 2, 3, 4])
    sign = rng.choice((-1.0, 1.0), (2 * n, 4))
    kid, kang = _walk(rng, main[:, j, 0].ravel(), main[:, j, 1].ravel(), np.repeat(s, 4),
                      (ang[:, j - 1] + sign * rng.uniform(0.35, 0.75, (2 * n, 4))).ravel(),
                      (ln[:, None] * (1 - j / 6) * rng.uniform(0.45, 0.7, (2 * n, 4))).ravel(), 4)
    g, _ = _walk(rng, kid[:, 1:3, 0].ravel(), kid[:, 1:3, 1].ravel(), np.repeat(s, 8),
                 (kang[:, 0:2] - sign.ravel()[:, None] * rng.uniform(0.4, 0.8, (8 * n, 2))).ravel(),
                 np.repeat(ln, 8) * rng.uniform(0.1, 0.16, 16 * n), 3)
    kid = kid.reshape(2 * n, 4, 5, 2)
    g = _there_and_back(g.reshape(2 * n, 4, 2, 4, 2))                  # (2n, 4, 2, 7, 2)
    home = main[:, 4::-1]
    walks = [
        np.concatenate([main[:, :1], np.concatenate([kid[:, :, :1], g[:, :, 0], g[:, :, 1],
                                                     kid[:, :, 1::-1]], 2).reshape(2 * n, -1, 2), home], 1),
        np.concatenate([main[:, :1], _there_and_back(kid).reshape(2 * n, -1, 2), home], 1),
        _there_and_back(main), _there_and_back(main[:, :3])]
    img = Image.new("L", (vr, vr), 0)
    draw = ImageDraw.Draw(img)
    for walk, width, fill in zip(walks, (0.005, 0.008, 0.012, 0.02), (120, 160, 200, 235)):
        for half in (walk[:n], walk[n:]):
            draw.line((half * vr).ravel().tolist(), fill=fill, width=max(1, round(width * vr)), joint="curve")
    if vr >= 96:
        img = img.filter(ImageFilter.GaussianBlur(0.45 * vr / 256 + 0.3))
    small = np.asarray(img, dtype=F32) * F32(1.0 / 255.0)
    gr = max(2, 22 * vr // 256)
    small = small + 0.16 * upsample(rng.standard_normal((gr, gr)).astype(F32), vr, vr)
    c.vess = np.zeros((size, size), F32)
    if vr == size:
        c.vess[lw.sl] = small[lw.sl]
    else:
        k = vr / size
        img = Image.fromarray(small).resize((lw.x1 - lw.x0, lw.y1 - lw.y0), Image.BILINEAR,
                                            box=(lw.x0 * k, lw.y0 * k, lw.x1 * k, lw.y1 * k))
        c.vess[lw.sl] = np.asarray(img, dtype=F32)


def compose(c: Canvas, an: Any, rng: np.random.Generator) -> np.ndarray:
    """Final uint8 image: composite density, exposure gradient, film noise and an S-shaped,
    gamma-adjusted film response (consumes the canvas' density layer)."""
    s = c.lwin.sl
    t = c.vess[s] * F32(-c.vamp)
    t += F32(c.L)
    t *= c.air[s]
    d = c.dens
    d[s] -= t
    lo, span = 0.04 + an.exposure, 0.8 * an.contrast
    k = 1023.0 / span
    amp = an.noise * 3.46 * k
    d *= F32(k)
    d += (an.grad_x * (c.x - 0.5) * k).astype(F32)
    d += ((an.grad_y * (c.y - 0.5) - lo) * k - 0.5 * amp).astype(F32)
    noise = rng.random((c.size, c.size), dtype=F32)
    noise *= F32(amp)
    d += noise
    np.clip(d, 0.0, 1023.0, out=d)
    x = np.linspace(-2.2, 2.2, 1024)
    sig = 1.0 / (1.0 + np.exp(-x))
    sig = (sig - sig[0]) / (sig[-1] - sig[0])
    lut = np.round((0.5 * sig + 0.5 * np.linspace(0.0, 1.0, 1024)) ** an.gamma * 255.0).astype(np.uint8)
    return np.take(lut, d.astype(np.int16))
