"""Vectorised numpy drawing of the SynthAV actions.

Every primitive computes an anti-aliased alpha mask for all frames at once, ``(T, H, W)``,
so a clip is a few dozen array operations, not a loop over frames. Each action renderer
returns its sound events' times (an impact's contact frame) and, for continuous sounds,
a per-frame loudness envelope.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Array = np.ndarray


@dataclass
class Mask:
    """An alpha mask ``(T, y1 - y0, x1 - x0)`` in [0, 1] over a window of the frames."""

    alpha: Array
    y0: int
    y1: int
    x0: int
    x1: int


class Canvas:
    """A clip being drawn: float32 frames ``(T, H, W, 3)`` in [0, 255].

    Primitives only touch the window their shape can reach over the whole clip, so
    small actors cost little however long the clip is.

    Args:
        background: ``(T, H, W, 3)`` float32, the already jittered background.
        shift: ``(T, 2)`` camera offset (x, y) in pixels added to the scene grid.
        contrast: in [0, 1]; colours are pulled towards the background mean by
            ``1 - contrast`` (visual ambiguity).
    """

    def __init__(self, background: Array, shift: Array, contrast: float) -> None:
        self.frames = background
        t, h, w, _ = background.shape
        self.t, self.h, self.w = t, h, w
        self.sx = shift[:, 0].astype(np.float32)
        self.sy = shift[:, 1].astype(np.float32)
        self.bg_mean = background[::8, ::4, ::4].reshape(-1, 3).mean(0)
        self.contrast = float(contrast)

    @staticmethod
    def _col(v: Array | float) -> Array:
        return np.asarray(v, dtype=np.float32).reshape(-1, 1, 1) if np.ndim(v) else np.float32(v)

    def grid(self, cx: Array | float, cy: Array | float, extent: float) -> tuple[Array, Array, tuple] | None:
        """Scene coordinates ``(T, h, w)`` of the window a shape at ``cx, cy`` can cover.

        Returns ``(x, y, (y0, y1, x0, x1))`` or None when the shape never enters the frame.
        """
        px = np.asarray(cx, np.float32) - self.sx  # pixel column of the centre per frame
        py = np.asarray(cy, np.float32) - self.sy
        x0, x1 = (
            max(int(np.floor(px.min() - extent - 1)), 0),
            min(int(np.ceil(px.max() + extent + 2)), self.w),
        )
        y0, y1 = (
            max(int(np.floor(py.min() - extent - 1)), 0),
            min(int(np.ceil(py.max() + extent + 2)), self.h),
        )
        if x0 >= x1 or y0 >= y1:
            return None
        xs = np.arange(x0, x1, dtype=np.float32)
        ys = np.arange(y0, y1, dtype=np.float32)
        x = xs[None, None, :] + self.sx[:, None, None]
        y = ys[None, :, None] + self.sy[:, None, None]
        return x, y, (y0, y1, x0, x1)

    def disc(self, cx: Array | float, cy: Array | float, r: Array | float) -> Mask | None:
        """Filled circle; ``cx, cy, r`` scalars or ``(T,)``."""
        g = self.grid(cx, cy, float(np.max(r)))
        if g is None:
            return None
        x, y, win = g
        d = np.sqrt((x - self._col(cx)) ** 2 + (y - self._col(cy)) ** 2)
        return Mask(np.clip(self._col(r) - d + 0.5, 0.0, 1.0), *win)

    def box(
        self,
        cx: Array | float,
        cy: Array | float,
        hw: float,
        hh: float,
        angle: Array | float = 0.0,
        teeth: float = 0.0,
    ) -> Mask | None:
        """Rotated rectangle of half sizes ``hw`` (along ``angle``) and ``hh``.

        ``teeth`` > 0 cuts a saw-tooth profile of that depth into the ``+v`` edge.
        """
        g = self.grid(cx, cy, float(np.hypot(hw, hh + teeth)))
        if g is None:
            return None
        x, y, win = g
        a = self._col(angle)
        c, s = np.cos(a), np.sin(a)
        dx, dy = x - self._col(cx), y - self._col(cy)
        u = dx * c + dy * s
        v = -dx * s + dy * c
        edge_v = hh
        if teeth > 0:
            edge_v = hh + teeth * (np.abs(((u / (2 * teeth)) % 1.0) - 0.5) * 2.0) - teeth
        alpha = np.clip(hw - np.abs(u) + 0.5, 0.0, 1.0) * np.clip(edge_v - np.abs(v) + 0.5, 0.0, 1.0)
        return Mask(alpha, *win)

    def ellipse(self, cx: Array | float, cy: Array | float, rx: float, ry: float) -> Mask | None:
        g = self.grid(cx, cy, max(rx, ry))
        if g is None:
            return None
        x, y, win = g
        d = np.sqrt(((x - self._col(cx)) / rx) ** 2 + ((y - self._col(cy)) / ry) ** 2)
        return Mask(np.clip((1.0 - d) * min(rx, ry) + 0.5, 0.0, 1.0), *win)

    def paint(self, mask: Mask | None, color: Array) -> None:
        """Composites ``color`` (3,) over the frames where ``mask`` is set."""
        if mask is None:
            return
        col = self.bg_mean + (np.asarray(color, np.float32) - self.bg_mean) * self.contrast
        f = self.frames[:, mask.y0 : mask.y1, mask.x0 : mask.x1]
        f += mask.alpha[..., None] * (col - f)


@dataclass
class Events:
    """What the soundtrack must follow: event times (s) and an optional envelope ``(T,)``."""

    times: Array
    envelope: Array | None = None


def _color(rng: np.random.Generator) -> Array:
    """A saturated random colour: random hue, far from mid-grey."""
    base = rng.uniform(0, 255, 3)
    hi = rng.integers(0, 3)
    base[hi] = rng.uniform(190, 255)
    base[(hi + 1 + rng.integers(0, 2)) % 3] = rng.uniform(0, 70)
    return base.astype(np.float32)


def _zero_times(phase: Array, t: Array, period: float) -> Array:
    """Times in the clip where ``phase = t / period + offset`` crosses an integer."""
    k = np.arange(np.ceil(phase[0]), np.floor(phase[-1]) + 1)
    off = phase[0] - t[0] / period
    return ((k - off) * period).astype(np.float64)


def _bouncing_ball(cv: Canvas, rng: np.random.Generator, t: Array, s: float) -> Events:
    floor = s * rng.uniform(0.72, 0.9)
    r = s * rng.uniform(0.05, 0.1)
    period = rng.uniform(0.45, 0.9)
    height = s * rng.uniform(0.25, 0.5)
    ph = t / period + rng.uniform(0, 1)
    frac = ph % 1.0
    cy = floor - r - height * 4 * frac * (1 - frac)
    # Horizontal drift, reflected at the walls (a triangle wave).
    span = s - 4 * r
    x = (rng.uniform(0, span) + rng.uniform(-1, 1) * s * 0.25 * t) % (2 * span)
    cx = 2 * r + np.where(x < span, x, 2 * span - x)
    cv.paint(cv.box(s / 2, floor + 3, s, 3), _color(rng))
    cv.paint(cv.disc(cx, cy, r), _color(rng))
    return Events(_zero_times(ph, t, period))


def _clapping(cv: Canvas, rng: np.random.Generator, t: Array, s: float) -> Events:
    cx, cy = s * rng.uniform(0.35, 0.65), s * rng.uniform(0.35, 0.6)
    hw, hh = s * rng.uniform(0.04, 0.07), s * rng.uniform(0.1, 0.16)
    period = rng.uniform(0.35, 0.7)
    ph = t / period + rng.uniform(0, 1)
    gap = s * rng.uniform(0.12, 0.25) * np.abs(np.sin(np.pi * ph))
    tilt = 0.25 * np.abs(np.sin(np.pi * ph))
    skin, sleeve = _color(rng), _color(rng)
    for side in (-1, 1):
        hx = cx + side * (hw + gap / 2)
        cv.paint(cv.box(hx + side * hw * 0.8, cy + hh * 1.6, hw * 0.9, hh * 0.9, -side * tilt), sleeve)
        cv.paint(cv.box(hx, cy, hw, hh, side * tilt), skin)
    return Events(_zero_times(ph, t, period))


def _swing(ph: Array, lift: float) -> Array:
    """Angle of a striking tool: slow raise (60%), fast fall (40%), 0 at contact."""
    f = ph % 1.0
    return lift * np.where(f < 0.6, np.sin(0.5 * np.pi * f / 0.6), np.cos(0.5 * np.pi * (f - 0.6) / 0.4))


def _hammering(cv: Canvas, rng: np.random.Generator, t: Array, s: float) -> Events:
    bx, by = s * rng.uniform(0.3, 0.55), s * rng.uniform(0.6, 0.8)
    length = s * rng.uniform(0.28, 0.4)
    head_w, head_h = s * rng.uniform(0.04, 0.06), s * rng.uniform(0.07, 0.1)
    period = rng.uniform(0.5, 1.0)
    ph = t / period + rng.uniform(0, 1)
    theta = _swing(ph, rng.uniform(0.8, 1.3))
    # Pivot (the hand) to the right of the nail; the head lands on the nail at theta=0.
    px, py = bx + length, by - head_w - s * 0.03
    dx, dy = -np.cos(theta), -np.sin(theta)
    cv.paint(cv.box(bx, by + s * 0.08, s * 0.2, s * 0.06), _color(rng))  # the board
    cv.paint(cv.box(bx, by - s * 0.01, 1.5, s * 0.03), np.array([200, 200, 210], np.float32))  # nail
    cv.paint(cv.box(px + dx * length / 2, py + dy * length / 2, length / 2, s * 0.015, theta), _color(rng))
    cv.paint(cv.box(px + dx * length, py + dy * length, head_w, head_h, theta + np.pi / 2), _color(rng))
    cv.paint(cv.disc(px, py, s * 0.045), _color(rng))  # fist
    return Events(_zero_times(ph, t, period))


def _drumming(cv: Canvas, rng: np.random.Generator, t: Array, s: float) -> Events:
    dx, dy = s * rng.uniform(0.35, 0.65), s * rng.uniform(0.55, 0.7)
    rx, ry = s * rng.uniform(0.2, 0.3), s * rng.uniform(0.05, 0.08)
    cv.paint(cv.box(dx, dy + s * 0.12, rx, s * 0.12), _color(rng))
    cv.paint(cv.ellipse(dx, dy, rx, ry), _color(rng))
    period = rng.uniform(0.3, 0.6)
    offset = rng.uniform(0, 1)
    stick_col = _color(rng)
    times = []
    for side, lag in ((-1, 0.0), (1, 0.5)):
        ph = t / period + offset + lag
        theta = 1.1 * np.abs(np.sin(np.pi * ph))  # bounces off the skin
        length = s * 0.3
        tip_x, tip_y = dx + side * rx * 0.4, dy
        # Stick rotates about its butt end, which is up and outside the drum.
        bx, by = tip_x + side * length * 0.9, tip_y - length * 0.45
        base = np.arctan2(tip_y - by, tip_x - bx)
        ang = base - side * theta
        cx, cy = bx + np.cos(ang) * length / 2, by + np.sin(ang) * length / 2
        cv.paint(cv.box(cx, cy, length / 2, s * 0.012, ang), stick_col)
        cv.paint(cv.disc(bx, by, s * 0.04), stick_col * 0.6 + 60)
        times.append(_zero_times(ph, t, period))
    return Events(np.sort(np.concatenate(times)))


def _sawing(cv: Canvas, rng: np.random.Generator, t: Array, s: float) -> Events:
    lx, ly = s * rng.uniform(0.4, 0.6), s * rng.uniform(0.62, 0.78)
    cv.paint(cv.box(lx, ly, s * 0.32, s * 0.07), _color(rng))  # the log
    period = rng.uniform(0.6, 1.1)
    amp = s * rng.uniform(0.08, 0.16)
    w = 2 * np.pi / period
    phase0 = rng.uniform(0, 2 * np.pi)
    x = lx + amp * np.sin(w * t + phase0)
    depth = s * 0.04 * t / max(t[-1], 1e-3)  # the cut deepens slowly
    ang = rng.uniform(-0.15, 0.15)
    bw, bh = s * 0.22, s * 0.045
    y = ly - s * 0.07 - bh + depth
    cv.paint(cv.box(x, y, bw, bh, ang, teeth=s * 0.015), np.array([190, 195, 205], np.float32))
    cv.paint(cv.box(x + bw * np.cos(ang), y + bw * np.sin(ang) - bh, s * 0.05, s * 0.06, ang), _color(rng))
    speed = np.abs(np.cos(w * t + phase0))
    return Events(np.zeros(0), envelope=speed.astype(np.float32))


def _typing(cv: Canvas, rng: np.random.Generator, t: Array, s: float) -> Events:
    rows, cols = 3, int(rng.integers(6, 10))
    kx0, ky0 = s * rng.uniform(0.12, 0.2), s * rng.uniform(0.45, 0.6)
    pitch = s * 0.7 / cols
    key_col, body_col = _color(rng), _color(rng)
    cv.paint(
        cv.box(kx0 + pitch * (cols - 1) / 2, ky0 + pitch, pitch * cols / 2 + 4, pitch * 1.5 + 4), body_col
    )
    gx, gy = np.meshgrid(np.arange(cols), np.arange(rows))
    cxs, cys = kx0 + gx.ravel() * pitch, ky0 + gy.ravel() * pitch
    # All keys at once: the nearest grid key of every pixel, masked to the grid.
    g = cv.grid(kx0 + pitch * (cols - 1) / 2, ky0 + pitch, pitch * cols / 2 + 2)
    if g is not None:
        x, y, win = g
        ix = np.clip(np.round((x - kx0) / pitch), 0, cols - 1)
        iy = np.clip(np.round((y - ky0) / pitch), 0, rows - 1)
        d = np.maximum(np.abs(x - kx0 - ix * pitch), np.abs(y - ky0 - iy * pitch))
        cv.paint(Mask(np.clip(pitch * 0.38 - d + 0.5, 0, 1), *win), key_col)
    fps = 1.0 / (t[1] - t[0])
    n = max(2, int(rng.uniform(3, 7) * t[-1]))
    press = np.sort(rng.uniform(0.1, t[-1] - 0.05, n))
    which = rng.integers(0, rows * cols, n)
    # Finger: glides to the next key, dips onto it at the press time.
    fx = np.interp(t, press, cxs[which])
    fy = np.interp(t, press, cys[which]) - pitch * 0.6
    near = np.min(np.abs(t[:, None] - press[None]), axis=1)
    fy = fy + pitch * 0.6 * np.clip(1 - near * fps / 2.5, 0, 1)
    pressed = near * fps < 1.0
    hx = np.where(pressed, np.interp(t, press, cxs[which]), -1e4)
    hy = np.interp(t, press, cys[which])
    cv.paint(cv.box(hx, hy, pitch * 0.4, pitch * 0.4), 255 - key_col)
    cv.paint(cv.disc(fx, fy, pitch * 0.35), _color(rng))
    return Events(press)


def _knocking(cv: Canvas, rng: np.random.Generator, t: Array, s: float) -> Events:
    side = rng.choice([-1, 1])
    door_x = s / 2 + side * s * rng.uniform(0.15, 0.3)
    cv.paint(cv.box(door_x, s * 0.5, s * 0.06, s * 0.45), _color(rng))
    cv.paint(cv.disc(door_x - side * s * 0.03, s * 0.55, s * 0.02), np.array([220, 200, 60], np.float32))
    r = s * rng.uniform(0.045, 0.07)
    fy = s * rng.uniform(0.3, 0.45)
    period = rng.uniform(0.18, 0.3)
    burst = int(rng.integers(2, 4))
    pause = rng.uniform(0.4, 0.9)
    cycle = burst * period + pause
    t0 = rng.uniform(0, cycle)
    local = (t + t0) % cycle
    in_burst = local < burst * period
    pull = np.where(in_burst, np.abs(np.sin(np.pi * local / period)), 1.0)
    contact = door_x - side * (s * 0.06 + r)
    fx = contact - side * s * 0.12 * pull
    cv.paint(cv.box(fx - side * s * 0.2, fy + r * 0.3, s * 0.18, r * 0.55), _color(rng))  # forearm
    cv.paint(cv.disc(fx, fy, r), _color(rng))
    k0 = np.floor((t[0] + t0) / cycle) - 1
    starts = (np.arange(k0, k0 + 3 + t[-1] / cycle) * cycle - t0)[:, None] + np.arange(1, burst) * period
    hits = starts.ravel()
    return Events(np.sort(hits[(hits >= t[0]) & (hits <= t[-1])]))


def _ringing_bell(cv: Canvas, rng: np.random.Generator, t: Array, s: float) -> Events:
    px, py = s * rng.uniform(0.35, 0.65), s * rng.uniform(0.1, 0.2)
    length = s * rng.uniform(0.3, 0.45)
    period = rng.uniform(0.8, 1.4)  # full swing; it rings at both extremes
    amp = rng.uniform(0.35, 0.7)
    ph0 = rng.uniform(0, 2 * np.pi)
    theta = amp * np.sin(2 * np.pi * t / period + ph0)
    ux, uy = np.sin(theta), np.cos(theta)  # down the bell's axis
    col = _color(rng)
    cv.paint(cv.box(px, py - 3, s * 0.15, 3), _color(rng))  # the beam
    cv.paint(cv.box(px + ux * length * 0.45, py + uy * length * 0.45, s * 0.06, length * 0.45, -theta), col)
    cv.paint(cv.box(px + ux * length * 0.9, py + uy * length * 0.9, s * 0.13, s * 0.03, -theta), col)
    cv.paint(cv.disc(px + ux * length * 0.25, py + uy * length * 0.25, s * 0.07), col)
    lag = amp * 0.6 * np.sin(2 * np.pi * t / period + ph0 - 0.6)
    cv.paint(cv.disc(px + np.sin(lag) * length, py + np.cos(lag) * length, s * 0.025), _color(rng))
    # Extremes: 2 pi t / period + ph0 = pi/2 + k pi.
    ph = (2 * np.pi * t / period + ph0 - np.pi / 2) / np.pi
    return Events(_zero_times(ph, t, period / 2))


RENDERERS: dict[str, Callable[[Canvas, np.random.Generator, Array, float], Events]] = {
    "bouncing ball": _bouncing_ball,
    "clapping": _clapping,
    "hammering": _hammering,
    "drumming": _drumming,
    "sawing": _sawing,
    "typing": _typing,
    "knocking": _knocking,
    "ringing bell": _ringing_bell,
}


def background(rng: np.random.Generator, t: int, size: int, jitter: int) -> tuple[Array, Array]:
    """A random textured background with camera shake.

    Returns:
        frames ``(T, size, size, 3)`` float32 and the camera offsets ``(T, 2)``.
    """
    big = size + 2 * jitter
    kind = rng.integers(0, 4)
    yy, xx = np.mgrid[0:big, 0:big].astype(np.float32) / big
    c1, c2 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    if kind == 0:  # stripes
        f, a = rng.uniform(3, 12), rng.uniform(0, np.pi)
        m = 0.5 + 0.5 * np.sin(2 * np.pi * f * (xx * np.cos(a) + yy * np.sin(a)))
    elif kind == 1:  # checker
        f = rng.integers(3, 9)
        m = ((np.floor(xx * f) + np.floor(yy * f)) % 2).astype(np.float32)
    elif kind == 2:  # smooth blobs: upsampled low-resolution noise
        g = int(rng.integers(3, 7))
        low = rng.uniform(0, 1, (g, g)).astype(np.float32)
        idx = np.clip((np.arange(big) * g / big).astype(int), 0, g - 1)
        m = low[idx][:, idx]
        m = (m + np.roll(m, big // (2 * g), 0) + np.roll(m, big // (2 * g), 1)) / 3
    else:  # vertical gradient ("wall and floor")
        m = yy + 0.1 * np.sin(2 * np.pi * rng.uniform(5, 20) * xx)
    m = m * rng.uniform(0.3, 1.0)
    tex = c1 + (c2 - c1) * m[..., None] + rng.normal(0, 6, (big, big, 1))
    tex = tex.astype(np.float32)
    # Camera shake: a smooth random walk, clipped to the margin.
    steps = rng.normal(0, 0.6, (t, 2)).cumsum(0) + rng.normal(0, 0.4, (t, 2))
    off = np.clip(np.round(steps), -jitter, jitter).astype(int)
    frames = np.stack(
        [tex[jitter + oy : jitter + oy + size, jitter + ox : jitter + ox + size] for ox, oy in off]
    )
    return frames, off.astype(np.float32)


def occluders(cv: Canvas, rng: np.random.Generator, t: Array, s: float, count: int, scale: float) -> None:
    """Slowly moving shapes in front of the action (bigger with more ambiguity)."""
    for _ in range(count):
        x0, y0 = rng.uniform(0, s, 2)
        vx, vy = rng.normal(0, s * 0.08, 2)
        size = s * rng.uniform(0.08, 0.12) * (1 + 1.5 * scale)
        if rng.random() < 0.5:
            cv.paint(cv.disc(x0 + vx * t, y0 + vy * t, size), _color(rng))
        else:
            cv.paint(
                cv.box(x0 + vx * t, y0 + vy * t, size, size * rng.uniform(0.3, 1.2), rng.uniform(0, 3)),
                _color(rng),
            )
