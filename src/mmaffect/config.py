"""YAML configurations with command-line overrides.

A configuration is a nested dict read from YAML. ``key.sub=value`` overrides
(SpeechBrain / Hydra style) replace single entries; values are parsed as YAML
so ``faces.size=64`` gives an int and ``text.enabled=false`` a bool. Unknown
keys are rejected so that a typo never silently falls back to a default.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mmaffect.errors import ConfigError

PACKAGE_CONFIGS = "mmaffect.configs"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, not {type(data).__name__}")
    return data


def builtin_names() -> list[str]:
    """Names of the configurations shipped with the package, e.g. ``train``, ``synthetic/audio``."""
    root = resources.files(PACKAGE_CONFIGS)
    names = []
    for entry in root.iterdir():
        if entry.is_file() and entry.name.endswith(".yaml"):
            names.append(entry.name[: -len(".yaml")])
        elif entry.is_dir() and not entry.name.startswith("__"):
            names += [f"{entry.name}/{f.name[: -len('.yaml')]}" for f in entry.iterdir() if f.name.endswith(".yaml")]
    return sorted(names)


def builtin_name(source: str) -> str | None:
    """The built-in configuration a name or a repository path refers to, if any.

    ``synthetic/audio``, ``synthetic/audio.yaml`` and ``configs/synthetic/audio.yaml`` all name the
    shipped ``synthetic/audio``, so the README's commands work from any folder and from an installed wheel.

    >>> builtin_name("configs/synthetic/audio.yaml"), builtin_name("train"), builtin_name("mine.yaml")
    ('synthetic/audio', 'train', None)
    """
    name = source.replace("\\", "/").removeprefix("./").removeprefix("configs/")
    name = name[: -len(".yaml")] if name.endswith(".yaml") else name
    return name if name in builtin_names() else None


def builtin_config(name: str) -> dict[str, Any]:
    """A configuration shipped with the package (``configs/<name>.yaml``)."""
    resolved = builtin_name(name)
    if resolved is None:
        raise ConfigError(f"no built-in configuration {name!r} (built-in: {', '.join(builtin_names())})")
    ref = resources.files(PACKAGE_CONFIGS).joinpath(f"{resolved}.yaml")
    with resources.as_file(ref) as path:
        return _read_yaml(Path(path))


def load_config(source: str | Path | Mapping[str, Any], overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Load a configuration (file path, built-in name or mapping) and apply overrides.

    >>> cfg = load_config({"a": {"b": 1}}, ["a.b=2"])
    >>> cfg["a"]["b"]
    2
    """
    cfg = copy.deepcopy(dict(source)) if isinstance(source, Mapping) else read_config(source)
    return apply_overrides(cfg, overrides)


def read_config(source: str | Path) -> dict[str, Any]:
    """A YAML file, or else a built-in configuration named as in :func:`builtin_name`."""
    path = Path(source)
    if path.exists() or builtin_name(str(source)) is None:
        if path.suffix not in {".yaml", ".yml"} and not path.exists():
            raise ConfigError(f"{source}: no such configuration file, nor a built-in configuration "
                              f"(built-in: {', '.join(builtin_names())})")
        return _read_yaml(path)
    return builtin_config(str(source))


def apply_overrides(cfg: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``cfg`` with ``dotted.key=value`` overrides applied.

    >>> apply_overrides({"x": {"y": 1}}, ["x.y=[1, 2]"])
    {'x': {'y': [1, 2]}}
    >>> apply_overrides({"x": 1}, ["z=1"])
    Traceback (most recent call last):
    ...
    mmaffect.errors.ConfigError: unknown configuration key 'z' (known: x)
    """
    out = copy.deepcopy(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for depth, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                where = ".".join(parts[:depth]) or "top level"
                known = ", ".join(sorted(node)) if isinstance(node, dict) else "none"
                raise ConfigError(
                    f"unknown configuration key {'.'.join(parts[: depth + 1])!r}"
                    + (f" (known: {known})" if depth == 0 else f" (known under {where}: {known})")
                )
            if depth == len(parts) - 1:
                try:
                    node[part] = yaml.safe_load(raw)
                except yaml.YAMLError as exc:
                    raise ConfigError(f"override {item!r}: value is not valid YAML: {exc}") from None
            else:
                node = node[part]
    return out


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``update`` into a copy of ``base`` (keys of ``update`` must exist in ``base``)."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if key not in out:
            raise ConfigError(f"unknown configuration key {key!r} (known: {', '.join(sorted(out))})")
        if isinstance(out[key], dict) and isinstance(value, Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def dump_config(cfg: Mapping[str, Any]) -> str:
    """YAML text of a resolved configuration."""
    return yaml.safe_dump(dict(cfg), sort_keys=False)
