"""Sound synthesis for SynthAV: class sounds placed on visual events, and distractors.

Functions return float32 mono waveforms ``(N,)`` at ``sr`` Hz in about [-1, 1]. Impacts
land on the contact frame; timbres are randomised per class so that the tagger must learn
the class, not one waveform.
"""

from __future__ import annotations

import numpy as np

Array = np.ndarray


def _band_noise(rng: np.random.Generator, n: int, lo: float, hi: float, sr: int) -> Array:
    """White noise band-limited to [lo, hi] Hz with an FFT mask, unit RMS."""
    spec = np.fft.rfft(rng.normal(0, 1, n))
    f = np.fft.rfftfreq(n, 1 / sr)
    spec[(f < lo) | (f > hi)] = 0
    out = np.fft.irfft(spec, n)
    return (out / (np.sqrt(np.mean(out**2)) + 1e-8)).astype(np.float32)


def _decay(n: int, tau: float, sr: int) -> Array:
    return np.exp(-np.arange(n) / (tau * sr)).astype(np.float32)


def _tone(freqs: Array, amps: Array, n: int, sr: int, rng: np.random.Generator) -> Array:
    tt = np.arange(n, dtype=np.float32) / sr
    ph = rng.uniform(0, 2 * np.pi, len(freqs))
    return (amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * tt + ph[:, None])).sum(0).astype(np.float32)


def _impact(kind: str, rng: np.random.Generator, sr: int) -> Array:
    """One event's sound for a class (each call re-draws small variations)."""
    if kind == "bouncing ball":  # rubbery thud with a short ring
        n = int(0.12 * sr)
        f = rng.uniform(180, 320)
        tt = np.arange(n) / sr
        body = np.sin(2 * np.pi * (f * tt - 40 * tt**2)) * _decay(n, 0.035, sr)
        return (body + 0.5 * np.sin(2 * np.pi * 2.4 * f * tt) * _decay(n, 0.015, sr)).astype(np.float32)
    if kind == "clapping":  # a sharp burst of band noise
        n = int(0.08 * sr)
        lo = rng.uniform(700, 1200)
        return _band_noise(rng, n, lo, lo * 3, sr) * _decay(n, rng.uniform(0.01, 0.02), sr)
    if kind == "hammering":  # metallic ping: inharmonic partials, long-ish decay
        n = int(0.3 * sr)
        f = rng.uniform(1400, 2600)
        ring = _tone(f * np.array([1.0, 2.76, 5.4]), np.array([1.0, 0.5, 0.25]), n, sr, rng)
        click = _band_noise(rng, n, 2000, 7000, sr) * _decay(n, 0.004, sr)
        return 0.6 * ring * _decay(n, rng.uniform(0.06, 0.12), sr) + 0.5 * click
    if kind == "drumming":  # low membrane: pitch drop plus a little noise
        n = int(0.35 * sr)
        f = rng.uniform(70, 130)
        tt = np.arange(n) / sr
        phase = 2 * np.pi * (f * tt + f * 0.8 * 0.03 * (1 - np.exp(-tt / 0.03)))
        body = np.sin(phase) * _decay(n, rng.uniform(0.12, 0.2), sr)
        return (body + 0.25 * _band_noise(rng, n, 100, 1500, sr) * _decay(n, 0.03, sr)).astype(np.float32)
    if kind == "typing":  # tiny plastic click
        n = int(0.03 * sr)
        lo = rng.uniform(2500, 4000)
        return _band_noise(rng, n, lo, 7500, sr) * _decay(n, 0.003, sr)
    if kind == "knocking":  # woody knock: two low-mid resonances, short
        n = int(0.1 * sr)
        f = rng.uniform(350, 550)
        res = _tone(f * np.array([1.0, 2.3]), np.array([1.0, 0.4]), n, sr, rng) * _decay(n, 0.025, sr)
        return res + 0.3 * _band_noise(rng, n, 300, 2000, sr) * _decay(n, 0.006, sr)
    if kind == "ringing bell":  # bell: minor-third partial set, long decay
        n = int(0.9 * sr)
        f = rng.uniform(500, 900)
        partials = f * np.array([0.5, 1.0, 1.2, 1.5, 2.0, 2.5])
        ring = _tone(partials, np.array([0.4, 1.0, 0.6, 0.4, 0.3, 0.15]), n, sr, rng)
        return ring * _decay(n, rng.uniform(0.25, 0.45), sr) * 0.5
    raise ValueError(f"no impact sound for {kind!r}")


def _place(out: Array, template: Array, times: Array, sr: int, gains: Array | None = None) -> None:
    for i, tsec in enumerate(times):
        start = int(round(tsec * sr))
        if start >= len(out) or start + len(template) <= 0:
            continue
        a, b = max(start, 0), min(start + len(template), len(out))
        out[a:b] += template[a - start : b - start] * (1.0 if gains is None else gains[i])


def class_sound(
    kind: str,
    times: Array,
    envelope: Array | None,
    n: int,
    sr: int,
    fps: float,
    rng: np.random.Generator,
) -> Array:
    """The sound of action ``kind`` following its visual events.

    Args:
        kind: an action class name.
        times: event times in seconds (impacts).
        envelope: per-frame loudness ``(T,)`` for continuous sounds (sawing), else None.
        n: number of samples.
        sr: sample rate.
        fps: frame rate of ``envelope``.
        rng: random generator.

    Returns:
        ``(n,)`` float32 waveform, peak-normalised to 1.
    """
    out = np.zeros(n, np.float32)
    if kind == "sawing":
        if envelope is None:
            raise ValueError("sawing needs an envelope")
        env = np.interp(np.arange(n) / sr, np.arange(len(envelope)) / fps, envelope).astype(np.float32)
        lo = rng.uniform(1500, 2500)
        rasp = _band_noise(rng, n, lo, lo * 2.5, sr)
        teeth = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(60, 120) * np.arange(n) / sr)
        out = rasp * teeth * env**1.5
    else:
        for tsec in times:  # each impact re-drawn: natural variation between hits
            _place(out, _impact(kind, rng, sr), np.array([tsec]), sr, np.array([rng.uniform(0.6, 1.0)]))
    peak = float(np.abs(out).max())
    return out / peak if peak > 0 else out


def fake_events(
    kind: str, n: int, sr: int, fps: float, rng: np.random.Generator
) -> tuple[Array, Array | None]:
    """Plausible event times (or an envelope) for ``kind`` that follow no video: for misleading audio."""
    dur = n / sr
    if kind == "sawing":
        frames = int(dur * fps) + 1
        w = 2 * np.pi / rng.uniform(0.6, 1.1)
        return np.zeros(0), np.abs(np.cos(w * np.arange(frames) / fps + rng.uniform(0, 6))).astype(np.float32)
    if kind == "typing":
        return np.sort(rng.uniform(0, dur, max(2, int(rng.uniform(3, 7) * dur)))), None
    if kind == "knocking":
        period, gap = rng.uniform(0.18, 0.3), rng.uniform(0.4, 0.9)
        starts = np.arange(rng.uniform(0, 0.5), dur, 3 * period + gap)
        return (starts[:, None] + np.arange(3) * period).ravel(), None
    period = {"ringing bell": rng.uniform(0.4, 0.7), "drumming": rng.uniform(0.15, 0.3)}.get(
        kind, rng.uniform(0.35, 0.9)
    )
    return np.arange(rng.uniform(0, period), dur, period), None


def babble(n: int, sr: int, rng: np.random.Generator) -> Array:
    """Speech-like babble: a voiced pulse train through syllable-wise formants."""
    tt = np.arange(n) / sr
    rate = rng.uniform(3.0, 6.0)
    n_syl = int(np.ceil(tt[-1] * rate)) + 1
    syl = np.minimum((tt * rate).astype(int), n_syl - 1)
    f0_base = rng.uniform(95, 230)
    f0 = f0_base * (
        1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * tt) + rng.normal(0, 0.05, n_syl)[syl]
    )
    phase = 2 * np.pi * np.cumsum(f0) / sr
    harm = np.arange(1, 30)
    f1 = rng.uniform(300, 850, n_syl)
    f2 = rng.uniform(900, 2500, n_syl)
    out = np.zeros(n, np.float32)
    for h in harm:  # per-harmonic gain follows the current syllable's formants
        fh = h * f0
        if fh.min() > 7000:
            break
        g = np.exp(-(((fh - f1[syl]) / 120) ** 2)) + 0.6 * np.exp(-(((fh - f2[syl]) / 200) ** 2)) + 0.02
        out += (g * np.sin(h * phase)).astype(np.float32)
    local = (tt * rate) % 1.0
    env = np.sin(np.pi * local) ** 0.7 * (rng.random(n_syl) > 0.15)[syl]  # syllables with pauses
    noise = _band_noise(rng, n, 2000, 6000, sr) * 0.05
    out = out * env + noise * env
    return (out / (np.abs(out).max() + 1e-8)).astype(np.float32)


def music(n: int, sr: int, rng: np.random.Generator) -> Array:
    """A random pentatonic melody over a bass note: plucked harmonic tones."""
    bpm = rng.uniform(80, 160)
    beat = 60 / bpm * rng.choice([0.5, 1.0])
    root = rng.uniform(180, 330)
    scale = root * 2 ** (np.array([0, 2, 4, 7, 9, 12, 14, 16]) / 12)
    out = np.zeros(n, np.float32)
    t0 = rng.uniform(0, beat)
    note_len = int(min(beat * 2.5, 1.2) * sr)
    timbre = rng.uniform(0.2, 0.7, 5) ** np.arange(1, 6)
    for k, tsec in enumerate(np.arange(t0, n / sr, beat)):
        f = rng.choice(scale)
        tone = _tone(f * np.arange(1, 6), timbre, note_len, sr, rng) * _decay(note_len, beat * 0.8, sr)
        _place(out, tone, np.array([tsec]), sr)
        if k % 4 == 0:
            bass_len = int(min(4 * beat, 2.0) * sr)
            bass = _tone(np.array([root / 2, root]), np.array([1.0, 0.3]), bass_len, sr, rng)
            _place(out, bass * _decay(bass_len, beat * 2, sr) * 0.7, np.array([tsec]), sr)
    return (out / (np.abs(out).max() + 1e-8)).astype(np.float32)


def engine(n: int, sr: int, rng: np.random.Generator) -> Array:
    """Engine hum: harmonics of a slowly varying firing rate plus rumble."""
    tt = np.arange(n) / sr
    f = rng.uniform(25, 60) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * tt + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(f) / sr
    out = np.zeros(n, np.float32)
    for h in range(1, 16):
        out += (np.sin(h * phase + rng.uniform(0, 6)) / h**0.8).astype(np.float32)
    rumble = _band_noise(rng, n, 30, 600, sr) * (0.6 + 0.4 * np.sin(phase))
    out = out + 0.4 * rumble.astype(np.float32)
    return (out / (np.abs(out).max() + 1e-8)).astype(np.float32)


def wind(n: int, sr: int, rng: np.random.Generator) -> Array:
    """Wind: low-passed noise with slow gusts and a faint whistle."""
    spec = np.fft.rfft(rng.normal(0, 1, n))
    f = np.fft.rfftfreq(n, 1 / sr)
    spec *= 1.0 / (1.0 + (f / rng.uniform(200, 600)) ** 1.5)
    out = np.fft.irfft(spec, n)
    knots = rng.uniform(0.2, 1.0, int(n / sr * 1.5) + 2)
    gust = np.interp(np.arange(n), np.linspace(0, n, len(knots)), knots)
    whistle = _band_noise(rng, n, 600, 900, sr) * 0.03
    out = (out / (np.abs(out).max() + 1e-8) + whistle) * gust
    return (out / (np.abs(out).max() + 1e-8)).astype(np.float32)


DISTRACTORS = {"babble": babble, "music": music, "engine": engine, "wind": wind}
