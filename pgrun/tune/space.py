"""Search spaces for ``pgrun tune``: ``conf/tune/<algo>.yaml``, overlaid by
``conf/tune/<algo>_<env>.yaml`` when it exists (a param there replaces the generic one;
``null`` removes it), or one file given with ``space=FILE``.

A file is a mapping ``params:`` of config keys (``algo.lr``, ``env.num_envs``, …) to

* ``{type: float, low: L, high: H}`` with optional ``log: true`` or ``step: S``,
* ``{type: int, low: L, high: H}`` with optional ``log: true`` or ``step: S``,
* ``{type: categorical, choices: [...]}``: scalars, or lists (``[[64, 64], [32, 32]]``).

``load`` checks the file's shape; ``check_against`` checks each key against the composed
config (it must exist, and its low, high and every choice must pass ``config.validate``).
Every problem is named in one ConfigError.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pgrun.config import ConfigError, validate

TYPES = {"float": {"low", "high", "log", "step"}, "int": {"low", "high", "log", "step"},
         "categorical": {"choices"}}
"""Each type's keys besides ``type``."""
MISSING = object()


def space_files(conf_dir: Path, algo: str, env: str) -> list[Path]:
    """The generic file for ``algo`` and, when it exists, the one for ``algo`` on ``env``."""
    files = [conf_dir / "tune" / f"{algo}.yaml"]
    specific = conf_dir / "tune" / f"{algo}_{env}.yaml"
    return files + [specific] if specific.is_file() else files


def load(files: list[Path]) -> dict[str, dict]:
    """The merged ``params`` of ``files`` (later files win), checked; ConfigError else."""
    params: dict[str, Any] = {}
    for path in files:
        try:
            data = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such search-space file. Write one (see "
                              "conf/tune/ppo.yaml) or pass space=FILE.") from None
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: not a readable YAML file ({err}).") from None
        if not isinstance(data, dict) or set(data) != {"params"} or not isinstance(
                data["params"], dict):
            raise ConfigError(f"{path}: a search space is a mapping with one key, params: "
                              "{config.key: {type: float|int|categorical, ...}}; found "
                              f"{sorted(data) if isinstance(data, dict) else type(data).__name__}.")
        for key, spec in data["params"].items():
            if spec is None:
                params.pop(key, None)
            else:
                params[key] = spec
    problems = [p for key, spec in params.items() for p in _check_spec(str(key), spec)]
    if not params:
        problems.append("no params to search")
    if problems:
        where = ", ".join(str(f) for f in files)
        raise ConfigError(f"Invalid search space ({where}):\n  " + "\n  ".join(problems))
    return {str(k): dict(v) for k, v in params.items()}


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _check_spec(key: str, spec: Any) -> list[str]:
    if not isinstance(spec, dict):
        return [f"{key}: must be a mapping {{type: ..., ...}}, not {spec!r}"]
    kind = spec.get("type")
    if kind not in TYPES:
        return [f"{key}.type={kind!r}: must be one of {', '.join(TYPES)}"]
    out = [f"{key}.{k}: not a key of a {kind} param (allowed: type, "
           f"{', '.join(sorted(TYPES[kind]))})" for k in spec if k != "type" and k not in TYPES[kind]]
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            out.append(f"{key}.choices: must be a non-empty list")
        elif len({json.dumps(c) for c in choices}) < len(choices):
            out.append(f"{key}.choices: repeats a value")
        return out
    low, high = spec.get("low"), spec.get("high")
    want = int if kind == "int" else (int, float)
    for name, value in (("low", low), ("high", high), ("step", spec.get("step", MISSING))):
        if value is not MISSING and (not _number(value) or not isinstance(value, want)):
            out.append(f"{key}.{name}={value!r}: must be {'an integer' if kind == 'int' else 'a number'}")
    if out:
        return out
    if low >= high:
        out.append(f"{key}: low={low} must be < high={high}")
    if spec.get("log", False) not in (True, False):
        out.append(f"{key}.log={spec['log']!r}: must be true or false")
    elif spec.get("log") and low <= 0:
        out.append(f"{key}: log=true needs low > 0 (low={low})")
    if spec.get("log") and "step" in spec:
        out.append(f"{key}: log and step cannot be combined (Optuna)")
    if "step" in spec and spec["step"] <= 0:
        out.append(f"{key}.step={spec['step']}: must be > 0")
    return out


def values(spec: dict) -> list[Any]:
    """The values that bound the param: low and high, or every choice."""
    return list(spec["choices"]) if spec["type"] == "categorical" else [spec["low"], spec["high"]]


def check_against(params: dict[str, dict], cfg: DictConfig) -> None:
    """ConfigError naming each param whose key is not a setting of the composed ``cfg``, or
    whose bounds or choices the config's own checks reject."""
    problems = []
    for key, spec in params.items():
        node = OmegaConf.select(cfg, key, default=MISSING)
        if node is MISSING or key.startswith("hydra"):
            problems.append(f"{key}: not a setting of this config (see pgrun train --cfg job)")
            continue
        if isinstance(node, DictConfig):
            problems.append(f"{key}: a group of settings; search one of its keys")
            continue
        for value in values(spec):
            trial_cfg = cfg.copy()
            try:
                OmegaConf.update(trial_cfg, key, value, merge=False)
                validate(trial_cfg)
            except OmegaConfBaseException as err:
                problems.append(f"{key}={value!r}: {str(err).splitlines()[0]}")
            except ConfigError as err:
                problems += [line.strip() for line in str(err).splitlines()[1:]
                             if line.strip().startswith(key)] or [
                             f"{key}={value!r}: {str(err).splitlines()[-1].strip()}"]
    if problems:
        raise ConfigError("Invalid search space:\n  " + "\n  ".join(problems))


def suggest(trial, params: dict[str, dict]) -> dict[str, Any]:
    """Ask ``trial`` (an optuna.Trial) for a value of every param: {key: config value}.
    A list-valued choice travels through Optuna as its JSON text."""
    out = {}
    for key, spec in params.items():
        kind = spec["type"]
        if kind == "categorical":
            encoded = [encode(c) for c in spec["choices"]]
            out[key] = decode(trial.suggest_categorical(key, encoded))
        else:
            suggest_fn = trial.suggest_float if kind == "float" else trial.suggest_int
            extra = {"log": bool(spec.get("log", False))}
            if "step" in spec:
                extra["step"] = spec["step"]
            out[key] = suggest_fn(key, spec["low"], spec["high"], **extra)
    return out


def encode(value: Any) -> Any:
    """A choice as Optuna stores it (lists and mappings as JSON text)."""
    return json.dumps(value) if isinstance(value, list | dict) else value


def decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        return json.loads(value)
    return value


def contains(spec: dict, value: Any) -> bool:
    """Whether a config value lies in the param's range (or among its choices)."""
    if spec["type"] == "categorical":
        return encode(value) in [encode(c) for c in spec["choices"]]
    return _number(value) and spec["low"] <= value <= spec["high"]


def override(key: str, value: Any) -> str:
    """``key=value`` as a Hydra command-line override."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, list | dict):
        text = json.dumps(value).replace(" ", "")
    else:
        text = repr(value) if isinstance(value, float) else str(value)
    return f"{key}={text}"
