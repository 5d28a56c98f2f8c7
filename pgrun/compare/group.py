"""Select runs (``--filter``) and group them into the configurations being compared.

By default runs are grouped by everything in their config except the seed and the
result-neutral keys (``pgrun.runkeys.RESULT_NEUTRAL``), within each environment. A
group's label names only what tells it apart: ``algo=<name>`` when algorithms differ,
then the keys that differ between runs of its algorithm on its environment
(``algo=ppo algo.clip_eps=0.1``). Settings that merely follow from the algorithm or
environment choice (a tuned preset's ``total_steps``) do not clutter the labels.
``--by KEY[,KEY]`` groups by just those keys instead, pooling runs that differ otherwise.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from pgrun.compare.load import CompareError, Run
from pgrun.runkeys import is_neutral

ALIASES = {"algo": "algo.name", "env": "env.id"}
"""Short names for the config-group choices."""


@dataclass
class Group:
    """Runs of one configuration on one environment (one seed each, usually)."""

    env: str
    label: str
    values: dict[str, Any]  # the label's keys and values
    runs: list[Run] = field(default_factory=list)


def format_value(value: Any) -> str:
    """A config value as a user would type it on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, tuple):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def display_key(key: str) -> str:
    return next((alias for alias, full in ALIASES.items() if full == key), key)


def _resolve_key(key: str, runs: list[Run], option: str) -> str:
    key = ALIASES.get(key, key)
    if not any(key in run.config for run in runs):
        varying = ", ".join(display_key(k) for k in varying_keys(runs)) or "none"
        raise CompareError(f"{option} {key}: no run has this config key "
                           f"(keys that differ across runs: {varying})")
    return key


def _matches(value: Any, wanted: str) -> bool:
    if format_value(value) in (wanted, wanted.replace(" ", "")):
        return True
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(wanted) == float(value)
        except ValueError:
            return False
    return isinstance(value, bool | type(None)) and format_value(value) == wanted.lower()


def apply_filters(runs: list[Run], filters: list[str]) -> list[Run]:
    """Runs matching every ``KEY=VALUE`` (a key given twice matches either value)."""
    wanted: dict[str, list[str]] = defaultdict(list)
    for spec in filters:
        key, sep, value = spec.partition("=")
        if not sep or not key:
            raise CompareError(f"--filter {spec!r}: expected KEY=VALUE, e.g. --filter algo=ppo")
        wanted[_resolve_key(key.strip(), runs, "--filter")].append(value.strip())
    selected = [run for run in runs
                if all(any(_matches(run.config.get(key), v) for v in values)
                       for key, values in wanted.items())]
    if not selected:
        raise CompareError(f"no run matches {' '.join('--filter ' + f for f in filters)} "
                           f"(of {len(runs)} runs found)")
    return selected


def ignored(key: str) -> bool:
    """Keys that never define a group: the seed and the result-neutral keys."""
    return key == "seed" or is_neutral(key)


def varying_keys(runs: list[Run]) -> list[str]:
    """Config keys (besides the ``ignored`` ones) whose value is not the same in every run."""
    keys = dict.fromkeys(k for run in runs for k in run.config)
    return [k for k in keys if not ignored(k)
            and len({run.config.get(k, _ABSENT) for run in runs}) > 1]


_ABSENT = object()


def label_keys(runs: list[Run]) -> dict[tuple, list[str]]:
    """The keys that label the groups of each (environment, algorithm): ``algo.name`` if
    algorithms differ within any environment (or nothing else differs), then the keys
    that differ between runs of that algorithm on that environment."""
    cells: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        cells[_cell(run)].append(run)
    algos_per_env: dict[str, set] = defaultdict(set)
    for env, algo in cells:
        algos_per_env[env].add(algo)
    algo_varies = any(len(algos) > 1 for algos in algos_per_env.values())
    labels = {}
    for cell, members in cells.items():
        within = varying_keys(members)
        labels[cell] = (["algo.name"] if algo_varies or not within else []) + within
    return labels


def _cell(run: Run) -> tuple:
    return run.env, run.config.get("algo.name")


def _sort_key(values: dict[str, Any]) -> tuple:
    def one(v: Any) -> tuple:
        if isinstance(v, int | float) and not isinstance(v, bool):
            return (0, float(v), "")
        return (1, 0.0, format_value(v))

    return tuple(one(v) for v in values.values())


def group_runs(runs: list[Run], by: list[str] | None = None) -> tuple[list[Group], list[str]]:
    """Groups (sorted by environment, then by the label's values) and warnings about
    seeds that occur more than once in a group."""
    if by:
        keys = [_resolve_key(k, runs, "--by") for k in by]
        keys = [k for k in keys if k != "env.id"]  # environments are always apart
        cell_keys = dict.fromkeys(map(_cell, runs), keys)
    else:
        cell_keys = label_keys(runs)
    groups: dict[tuple, Group] = {}
    for run in runs:
        keys = cell_keys[_cell(run)]
        values = {k: run.config.get(k) for k in keys if k in run.config}
        identity = tuple(sorted((k, v) for k, v in run.config.items()
                                if not ignored(k))) if not by else ()
        label = " ".join(f"{display_key(k)}={format_value(v)}" for k, v in values.items())
        group_id = (run.env, label, identity)
        if group_id not in groups:
            groups[group_id] = Group(run.env, label or "all runs", values)
        groups[group_id].runs.append(run)
    ordered = sorted(groups.values(), key=lambda g: (g.env, _sort_key(g.values), g.label))
    warnings = []
    for group in ordered:
        group.runs.sort(key=lambda r: (_sort_key({"seed": r.seed}), str(r.path)))
        repeated = [s for s, n in Counter(r.seed for r in group.runs).items() if n > 1]
        if repeated:
            warnings.append(
                f"{group.label} on {group.env}: seed {', '.join(map(str, repeated))} occurs "
                f"more than once (repeated runs count as separate seeds)")
    return ordered, warnings
