"""Configuration loading and key=value overrides."""

from __future__ import annotations

import pytest

from mmaffect.config import apply_overrides, builtin_config, dump_config, load_config, merge
from mmaffect.errors import ConfigError


def test_builtin_prepare_config_has_the_paper_defaults():
    cfg = builtin_config("prepare")
    assert cfg["audio"]["sample_rate"] == 22050
    assert cfg["audio"]["frame_samples"] == 2205
    assert cfg["text"]["max_words"] == 30
    assert cfg["text"]["delay"] == 0.5
    assert cfg["faces"]["size"] == 96


def test_overrides_parse_yaml_values():
    cfg = load_config("prepare", ["faces.size=64", "text.enabled=false", "text.embedder=hf:/x"])
    assert cfg["faces"]["size"] == 64
    assert cfg["text"]["enabled"] is False
    assert cfg["text"]["embedder"] == "hf:/x"


@pytest.mark.parametrize("bad", ["faces.sise=3", "nope=1", "faces.size.x=1"])
def test_unknown_keys_are_rejected(bad):
    with pytest.raises(ConfigError, match="unknown configuration key"):
        apply_overrides(builtin_config("prepare"), [bad])


def test_override_without_equals_is_rejected():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({"a": 1}, ["a"])


def test_file_config_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(builtin_config("prepare")))
    assert load_config(path) == builtin_config("prepare")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)


def test_merge_rejects_unknown_and_merges_deep():
    assert merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}
    with pytest.raises(ConfigError):
        merge({"a": 1}, {"b": 2})
