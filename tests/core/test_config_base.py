from dataclasses import dataclass
from typing import Literal

import pytest

from imd_core.config_base import FrozenConfig, parse_overrides
from imd_core.errors import ConfigError


@dataclass(frozen=True)
class Inner(FrozenConfig):
    lr: float = 1e-3


@dataclass(frozen=True)
class Outer(FrozenConfig):
    size: Literal["tiny", "base"] = "tiny"
    frames: int = 8
    labels: tuple[str, ...] = ()
    inner: Inner = Inner()


def test_round_trip_and_nesting():
    cfg = Outer.from_dict({"size": "base", "labels": ["a", "b"], "inner": {"lr": 0.5}})
    assert cfg.labels == ("a", "b") and cfg.inner.lr == 0.5
    assert Outer.from_dict(cfg.to_dict()) == cfg


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['framez'\].*frames"):
        Outer.from_dict({"framez": 3})


def test_bad_literal_lists_choices():
    with pytest.raises(ConfigError, match="tiny"):
        Outer.from_dict({"size": "huge"})


def test_overrides():
    cfg = Outer().with_overrides(parse_overrides(["inner.lr=0.1", "frames=4"]))
    assert cfg.inner.lr == 0.1 and cfg.frames == 4
    with pytest.raises(ConfigError, match="unknown key"):
        Outer().with_overrides({"inner.nope": "1"})
