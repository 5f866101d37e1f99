"""The README's screenshots: every image it shows exists, and every image is shown."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_shows_every_screenshot_the_command_writes():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = set(re.findall(r"\]\((docs/screenshots/[^)]+\.png)\)", readme))
    on_disk = {str(p.relative_to(ROOT)) for p in (ROOT / "docs" / "screenshots").glob("*.png")}
    assert shown == on_disk
    assert "docs/screenshots/player_kinetics400.png" in shown  # the real model on a real clip
    command = readme[readme.index("python -m imd_app.screenshots") :]
    assert "--real-model kinetics400" in command and "--real-clip" in command


def test_screenshot_command_wants_a_clip_with_the_real_model(capsys):
    from imd_app.screenshots import main

    assert main(["--real-model", "kinetics400"]) == 1
    assert "--real-clip" in capsys.readouterr().err
