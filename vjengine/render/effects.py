"""The pure math behind the post effects (no GL here, so it is testable on its own); the
``Effects`` values themselves live in :mod:`vjengine.effects`.

The chain, per frame: blend the bank frames (bank resolution) -> crossfade with another bank -> hue
rotate -> feedback trails -> [kept as the feedback state] -> intensity -> beat flash / strobe (toward
white) -> one scaled pass to the output, in which the geometric effects (zoom pulse, mirror,
kaleidoscope) are pieces of geometry with their own texture coordinates, so they cost nothing extra.
Blackout clears the output.
"""

from __future__ import annotations

import math

import numpy as np

from vjengine.effects import MIRROR_BOTH, MIRROR_HORIZONTAL, MIRROR_VERTICAL, Effects

FIT_MODES = ("fit", "fill", "stretch")
STROBE_ON_S = 1.0 / 30.0  # how long one strobe flash stays white (at least one rendered frame)


def hue_matrix(hue_deg: float) -> np.ndarray:
    """3x3 float32 matrix rotating RGB colours by ``hue_deg`` about the grey axis (1, 1, 1).

    120 degrees maps red to green, green to blue and blue to red exactly; greys are unchanged.
    """
    a = math.radians(hue_deg)
    c, s = math.cos(a), math.sin(a)
    k = np.full(3, 1.0 / math.sqrt(3.0))
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    m = c * np.eye(3) + s * cross + (1 - c) * np.outer(k, k)
    return m.astype(np.float32)


def per_frame_amount(amount_per_60th: float, dt_s: float) -> float:
    """Convert a per-1/60-s retention (feedback) to this frame's, so trails do not depend on fps."""
    if amount_per_60th <= 0.0:
        return 0.0
    return float(amount_per_60th ** (60.0 * max(dt_s, 0.0)))


class FlashGate:
    """Strobe and beat-flash timing under a cap on flashes per second.

    ``update(fx, dt_s) -> (flash_level, strobe_on)``. A flash is a rise of the white level: a strobe
    pulse, or a beat flash envelope that rises above what is shown. A rise is allowed only when at least
    ``1 / strobe_max_hz`` seconds passed since the previous one; otherwise the shown flash level is held
    at or below its previous value, so no request (however fast) gets more than ``strobe_max_hz``
    flashes per second onto the screen.
    """

    def __init__(self) -> None:
        self.now_s = 0.0
        self._last_onset_s = -math.inf
        self._strobe_phase = 0.0
        self._strobe_until_s = -math.inf
        self._shown_flash = 0.0
        self.onsets = 0

    def _allowed(self, max_hz: float) -> bool:
        return max_hz > 0.0 and self.now_s - self._last_onset_s >= 1.0 / max_hz - 1e-9

    def update(self, fx: Effects, dt_s: float) -> tuple[float, bool]:
        self.now_s += max(0.0, dt_s)
        max_hz = fx.strobe_max_hz
        strobe_on = self.now_s < self._strobe_until_s
        if fx.strobe_hz > 0.0 and max_hz > 0.0:
            self._strobe_phase += max(0.0, dt_s) * min(fx.strobe_hz, max_hz)
            if self._strobe_phase >= 1.0:
                self._strobe_phase %= 1.0
                if self._allowed(max_hz):
                    self._last_onset_s = self.now_s
                    self._strobe_until_s = self.now_s + STROBE_ON_S
                    self.onsets += 1
                    strobe_on = True
        else:
            self._strobe_phase = 0.0
        requested = fx.flash
        if requested > self._shown_flash + 1e-6:
            if self._allowed(max_hz) and not strobe_on:
                self._last_onset_s = self.now_s
                self.onsets += 1
                self._shown_flash = requested
            # else: hold the shown level (it may only fall until a rise is allowed again)
        else:
            self._shown_flash = requested
        return self._shown_flash, strobe_on


# --- output geometry --------------------------------------------------------------------------

def image_rect(image_size: tuple[int, int], viewport_size: tuple[int, int], fit: str) -> tuple[float, float, float, float]:
    """Where the image lands in the viewport, in normalized device coordinates: (x0, y0, x1, y1).

    ``fit`` keeps the aspect and shows all of the image (bars), ``fill`` keeps the aspect and covers
    the viewport (crops), ``stretch`` covers the viewport and ignores the aspect.
    """
    if fit not in FIT_MODES:
        raise ValueError(f"fit must be one of {FIT_MODES}, got {fit!r}")
    iw, ih = image_size
    vw, vh = viewport_size
    if fit == "stretch" or iw <= 0 or ih <= 0 or vw <= 0 or vh <= 0:
        return -1.0, -1.0, 1.0, 1.0
    scale = (min if fit == "fit" else max)(vw / iw, vh / ih)
    sx, sy = iw * scale / vw, ih * scale / vh
    return -sx, -sy, sx, sy


def _clip_to_box(poly: np.ndarray, lo: tuple[float, float] = (0.0, 0.0),
                 hi: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Sutherland-Hodgman clip of a convex polygon [n, 2] to the box lo..hi."""
    for axis, keep_low in ((0, False), (0, True), (1, False), (1, True)):
        if len(poly) == 0:
            break
        bound = lo[axis] if not keep_low else hi[axis]
        inside = (poly[:, axis] >= bound) if not keep_low else (poly[:, axis] <= bound)
        out = []
        n = len(poly)
        for i in range(n):
            cur, nxt = poly[i], poly[(i + 1) % n]
            cin, nin = inside[i], inside[(i + 1) % n]
            if cin:
                out.append(cur)
            if cin != nin:
                t = (bound - cur[axis]) / (nxt[axis] - cur[axis])
                out.append(cur + t * (nxt - cur))
        poly = np.array(out, dtype=np.float64).reshape(-1, 2)
    return poly


def _pieces(fx: Effects, aspect: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Convex polygons in display space (s right, t down, 0..1 over the image) with the 2x3 affine
    map from display to source coordinates of each."""
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    if fx.kaleidoscope >= 2:
        n = fx.kaleidoscope
        wedge = 2.0 * math.pi / n
        rot = math.radians(fx.kaleidoscope_deg)
        # Work in p = (s - 0.5) * aspect, (t - 0.5): a space with square pixels.
        half_diag = 0.5 * math.hypot(aspect, 1.0)
        shrink = 0.5 * min(aspect, 1.0) / half_diag  # source wedge stays inside the image
        to_p = np.array([[aspect, 0.0, -0.5 * aspect], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
        from_p = np.linalg.inv(to_p)
        sub = max(1, math.ceil(wedge / (math.pi / 4)))  # keep each triangle narrow
        radius = half_diag / math.cos(wedge / sub / 2) * 1.001
        pieces = []
        for k in range(n):
            a0 = rot + k * wedge
            # source angle = rot + (theta - a0) for even k, rot + (a0 + wedge - theta) for odd k
            if k % 2 == 0:  # rotate wedge k back onto wedge 0: theta -> theta - k * wedge
                ang = -k * wedge
                lin = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
            else:  # reflect it onto wedge 0: theta -> psi - theta
                psi = 2 * rot + (k + 1) * wedge
                lin = np.array([[math.cos(psi), math.sin(psi)], [math.sin(psi), -math.cos(psi)]])
            lin = lin * shrink
            m_p = np.eye(3)
            m_p[:2, :2] = lin
            m = (from_p @ m_p @ to_p)[:2]
            for j in range(sub):
                b0 = a0 + j * wedge / sub
                b1 = a0 + (j + 1) * wedge / sub
                tri_p = np.array([[0.0, 0.0], [radius * math.cos(b0), radius * math.sin(b0)],
                                  [radius * math.cos(b1), radius * math.sin(b1)]])
                tri = np.column_stack([tri_p[:, 0] / aspect + 0.5, tri_p[:, 1] + 0.5])
                poly = _clip_to_box(tri)
                if len(poly) >= 3:
                    pieces.append((poly, m))
        return pieces
    if fx.mirror in (MIRROR_HORIZONTAL, MIRROR_VERTICAL, MIRROR_BOTH):
        xs = [(0.0, 0.5, False), (0.5, 1.0, True)] if fx.mirror in (1, 3) else [(0.0, 1.0, False)]
        ys = [(0.0, 0.5, False), (0.5, 1.0, True)] if fx.mirror in (2, 3) else [(0.0, 1.0, False)]
        pieces = []
        for x0, x1, fx_ in xs:
            for y0, y1, fy in ys:
                poly = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
                m = np.array([[-1.0 if fx_ else 1.0, 0.0, 1.0 if fx_ else 0.0],
                              [0.0, -1.0 if fy else 1.0, 1.0 if fy else 0.0]])
                pieces.append((poly, m))
        return pieces
    return [(np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), identity)]


def output_vertices(image_size: tuple[int, int], viewport_size: tuple[int, int], fit: str,
                    fx: Effects) -> np.ndarray:
    """Triangles for the output pass: float32 [n, 4] rows of (x_ndc, y_ndc, u, v).

    ``u, v`` address the bank-resolution image with v = 0 at its top row (textures hold rows top
    first). Zoom, mirror and kaleidoscope are affine per piece, so the hardware interpolates them
    exactly and the fragment shader stays a single texture tap.
    """
    x0, y0, x1, y1 = image_rect(image_size, viewport_size, fit)
    # The displayed aspect (in output pixels) decides the kaleidoscope's square space.
    vw, vh = viewport_size
    aspect = ((x1 - x0) * vw) / max((y1 - y0) * vh, 1e-9)
    zoom = max(1.0, fx.zoom)
    # The part of the image inside the viewport (all of it unless ``fill`` crops), in display space:
    # pieces are clipped to it so no vertex lies off screen and the sampled texels are known exactly.
    visible_lo = (max(0.0, (-1.0 - x0) / (x1 - x0)), max(0.0, (y1 - 1.0) / (y1 - y0)))
    visible_hi = (min(1.0, (1.0 - x0) / (x1 - x0)), min(1.0, (y1 + 1.0) / (y1 - y0)))
    rows = []
    for poly, m in _pieces(fx, aspect):
        poly = _clip_to_box(poly, visible_lo, visible_hi)
        if len(poly) < 3:
            continue
        src = poly @ m[:, :2].T + m[:, 2]
        src = 0.5 + (src - 0.5) / zoom
        ndc_x = x0 + poly[:, 0] * (x1 - x0)
        ndc_y = y1 - poly[:, 1] * (y1 - y0)  # t grows downward, NDC y upward
        for i in range(1, len(poly) - 1):
            for v in (0, i, i + 1):
                rows.append((ndc_x[v], ndc_y[v], src[v, 0], src[v, 1]))
    return np.asarray(rows, dtype=np.float32).reshape(-1, 4)
