"""Across environments: which configuration is better over the suite, and how sure we are.

After Agarwal et al. (2021), "Deep RL at the edge of the statistical precipice" (the
methods of rliable, written here: rliable 1.2 does not import beside pandas 3).

- Normalized score of a final return x on environment e: z = (x − r_e) / (h_e − r_e),
  r_e a random policy's return and h_e a reference return (0 = random, 1 = reference),
  from ``--scores``, the runs' ``env.random_score``/``env.reference_score``, or pgrun's
  own ``conf/env/<id>.yaml`` (which cites each number's source).
- Aggregates over the pooled normalized scores of every run on every environment:
  IQM, mean, median and optimality gap, mean of max(1 − z, 0); stratified bootstrap
  intervals (each environment's runs resampled on their own). Every environment weighs
  the same, and each run within it equally (``bootstrap.stratum_weights``): with equal
  runs per environment these are rliable's pooled statistics, and an environment with
  more runs does not pull the aggregate its way.
- Average probability of improvement: P̄(X > Y) = (1/M) Σ_e P(X_e > Y_e) over the M
  environments, with a stratified bootstrap interval.
- Performance profile: the fraction of runs with z > τ (weighted as above), for τ over
  the scores' range.
- Sample-efficiency curve: the IQM of z along each run's curve, at fractions of each
  environment's budget (the steps its figures are taken at).

A configuration is a group label (``algo=ppo``); it enters the aggregate when it has
scored runs on every environment that has reference scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from pgrun.cli import CONF_DIR
from pgrun.compare import bootstrap, configdata, stats
from pgrun.compare.load import CompareError, Run
from pgrun.compare.summary import Comparison, curve_of, stable_seed

CURVE_POINTS = 11
"""Points of a sample-efficiency curve: every 10% of each environment's span."""
PROFILE_POINTS = 101
METRICS = ("iqm", "mean", "median", "optimality_gap")


@dataclass
class Reference:
    random: float
    reference: float
    source: str

    def normalize(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=float) - self.random) / (self.reference - self.random)


@dataclass
class Suite:
    envs: list[str]
    references: dict[str, Reference]
    runs: pd.DataFrame  # configuration × environment: runs scored
    aggregates: pd.DataFrame  # one row per configuration: each metric and its interval
    pairs: pd.DataFrame  # P̄(X > Y) per pair of configurations
    profile: dict = field(default_factory=dict)  # "tau" and per config (fraction, low, high)
    curves: dict = field(default_factory=dict)  # "fraction" and per config (iqm, low, high)


def parse_scores(specs: list[str]) -> dict[str, Reference]:
    """``ENV=RANDOM,REFERENCE`` options as references (CompareError if malformed)."""
    parsed = {}
    for spec in specs:
        env, _, numbers = spec.rpartition("=")
        try:
            random, reference = (float(v) for v in numbers.split(","))
        except ValueError:
            raise CompareError(f"--scores {spec!r}: expected ENV=RANDOM,REFERENCE, e.g. "
                               "--scores CartPole-v1=23.7,500") from None
        if not env or random == reference or not math.isfinite(random + reference):
            raise CompareError(f"--scores {spec!r}: needs an env and two different finite "
                               "scores")
        parsed[env] = Reference(random, reference, "--scores")
    return parsed


def _preset_scores() -> dict[str, Reference]:
    """Scores in pgrun's ``conf/env/*.yaml`` (read as data), by env id."""
    found = {}
    for path in sorted((CONF_DIR / "env").glob("*.yaml")):
        try:
            data = configdata.load(path.read_text())
        except (OSError, configdata.ConfigDataError):
            continue
        random, reference = data.get("random_score"), data.get("reference_score")
        if isinstance(random, int | float) and isinstance(reference, int | float) \
                and random != reference:
            found[str(data.get("id"))] = Reference(float(random), float(reference),
                                                   f"conf/env/{path.name}")
    return found


def references(runs_by_env: dict[str, list[Run]], given: dict[str, Reference],
               ) -> tuple[dict[str, Reference], list[str]]:
    """Each environment's reference scores: ``--scores`` first, then the runs' configs,
    then pgrun's presets; and a warning naming each environment that has none."""
    presets, found, warnings = None, {}, []
    for env, runs in runs_by_env.items():
        if env in given:
            found[env] = given[env]
            continue
        from_runs = {(r.config.get("env.random_score"), r.config.get("env.reference_score"))
                     for r in runs}
        from_runs = {(a, b) for a, b in from_runs if a is not None and b is not None and a != b}
        presets = _preset_scores() if presets is None else presets
        if len(from_runs) == 1:
            random, reference = from_runs.pop()
            found[env] = Reference(float(random), float(reference),
                                   "the runs' env.random_score, env.reference_score")
        elif not from_runs and env in presets:
            found[env] = presets[env]
        else:
            why = "its runs disagree on them" if from_runs else "none known"
            warnings.append(f"{env}: left out of the comparison across environments, no "
                            f"random and reference score ({why}; --scores "
                            f"{env}=RANDOM,REFERENCE)")
    return found, warnings


def aggregate(result: Comparison, source: str, given: dict[str, Reference],
              seed: int) -> tuple[Suite | None, list[str]]:
    """The comparison across environments, or None when fewer than two environments
    with reference scores share a configuration; and warnings."""
    envs_all = list(result.budgets)
    runs_by_env = {e: [r for (env, _), rs in result.scored.items() if env == e for r in rs]
                   for e in envs_all}
    refs, warnings = references(runs_by_env, given)
    envs = [e for e in envs_all if e in refs]
    labels = list(dict.fromkeys(label for _, label in result.scored))
    configs = [c for c in labels if all(len(result.finals.get((e, c), ())) for e in envs)]
    missing = [c for c in labels if c not in configs]
    if len(envs) < 2 or not configs:
        return None, warnings if len(envs_all) > 1 else []
    for c in missing:
        lacking = [e for e in envs if not len(result.finals.get((e, c), ()))]
        warnings.append(f"{c}: left out of the comparison across environments, no scored "
                        f"runs on {', '.join(lacking)}")
    scores = {c: [refs[e].normalize(result.finals[e, c]) for e in envs] for c in configs}
    runs = pd.DataFrame({e: [len(result.finals[e, c]) for c in configs] for e in envs},
                        index=configs)
    suite = Suite(envs, {e: refs[e] for e in envs}, runs,
                  _aggregates(scores, seed), _pairs(result, envs, configs, seed))
    suite.profile = _profile(scores, seed)
    suite.curves = _curves(result, source, envs, configs, refs, seed)
    return suite, warnings


def _metrics(z: np.ndarray, c: np.ndarray) -> dict[str, np.ndarray]:
    """Each aggregate metric of the pooled scores ``z`` for resample counts ``c``."""
    return {"iqm": bootstrap.trimmed_mean(z, c), "mean": bootstrap.mean(z, c),
            "median": bootstrap.median(z, c),
            "optimality_gap": bootstrap.mean(np.maximum(1 - z, 0), c)}


def _aggregates(scores: dict[str, list[np.ndarray]], seed: int) -> pd.DataFrame:
    rows = []
    for config, per_env in scores.items():
        z = np.concatenate(per_env)
        sizes = [len(s) for s in per_env]
        unit = bootstrap.stratum_weights(sizes)
        point = _metrics(z, unit[None, :])
        row = {"config": config, "runs": len(z)}
        if bootstrap.too_few(*per_env):
            resampled = None
        else:
            resampled = _metrics(z, unit * bootstrap.counts(sizes,
                                                            stable_seed(seed, "suite", config)))
        for name in METRICS:
            row[name] = float(point[name][0])
            low, high = bootstrap.interval(resampled[name]) if resampled else (math.nan,) * 2
            row[f"{name}_low"], row[f"{name}_high"] = low, high
        rows.append(row)
    return pd.DataFrame(rows).sort_values("iqm", ascending=False, kind="stable")


def _pairs(result: Comparison, envs: list[str], configs: list[str],
           seed: int) -> pd.DataFrame:
    """P̄(X > Y) = (1/M) Σ_e P(X_e > Y_e) for each pair, X the one with the higher P̄."""
    rows = []
    for a, b in combinations(configs, 2):
        xs = [result.finals[e, a] for e in envs]
        ys = [result.finals[e, b] for e in envs]
        p = float(np.mean([stats.probability_of_improvement(x, y)
                           for x, y in zip(xs, ys, strict=True)]))
        x, y, flip = (a, b, False) if p >= 0.5 else (b, a, True)
        if flip:
            xs, ys, p = ys, xs, 1 - p
        low = high = math.nan
        if not bootstrap.too_few(*xs, *ys):
            sizes = [n for x_e, y_e in zip(xs, ys, strict=True) for n in (len(x_e), len(y_e))]
            c = bootstrap.counts(sizes, stable_seed(seed, "suite-poi", x, y))
            edges = np.cumsum([0, *sizes])
            per_env = [bootstrap.poi(x_e, y_e, c[:, edges[2 * i]:edges[2 * i + 1]],
                                     c[:, edges[2 * i + 1]:edges[2 * i + 2]])
                       for i, (x_e, y_e) in enumerate(zip(xs, ys, strict=True))]
            low, high = bootstrap.interval(np.mean(per_env, axis=0))
        rows.append({"x": x, "y": y, "envs": len(envs), "p_improvement": p,
                     "low": low, "high": high})
    return pd.DataFrame(rows, columns=["x", "y", "envs", "p_improvement", "low", "high"])


def _profile(scores: dict[str, list[np.ndarray]], seed: int) -> dict:
    """Fraction of runs with z > τ on a grid of τ covering [min(0, z), max(1, z)]."""
    pooled = np.concatenate([z for per_env in scores.values() for z in per_env])
    tau = np.linspace(min(0.0, pooled.min()), max(1.0, pooled.max()), PROFILE_POINTS)
    profile = {"tau": tau}
    for config, per_env in scores.items():
        z = np.concatenate(per_env)
        above = (z[:, None] > tau[None, :]).astype(float)
        sizes = [len(s) for s in per_env]
        unit = bootstrap.stratum_weights(sizes)
        fraction = bootstrap.mean(above, unit[None, :])[0]
        low = high = fraction
        if not bootstrap.too_few(*per_env):
            c = bootstrap.counts(sizes, stable_seed(seed, "profile", config))
            low, high = bootstrap.interval(bootstrap.mean(above, unit * c))
        profile[config] = (fraction, low, high)
    return profile


def _curves(result: Comparison, source: str, envs: list[str], configs: list[str],
            refs: dict[str, Reference], seed: int) -> dict:
    """IQM of the normalized return along the runs' curves, at fractions 0..1 of each
    environment's span [a, B] (a: its AUC start, B: its budget)."""
    fraction = np.linspace(0, 1, CURVE_POINTS)
    curves = {"fraction": fraction}
    table = result.table.drop_duplicates("env").set_index("env")
    for config in configs:
        per_env = []
        for e in envs:
            start, end = table.loc[e, "auc_start"], table.loc[e, "auc_end"]
            grid = start + fraction * (end - start)
            returns = stats.interpolate([curve_of(r, source) for r in result.scored[e, config]],
                                        grid)
            per_env.append(refs[e].normalize(returns))
        z = np.concatenate(per_env)  # (runs, points)
        sizes = [len(s) for s in per_env]
        unit = bootstrap.stratum_weights(sizes)
        iqm = np.array([bootstrap.trimmed_mean(z[:, k], unit[None, :])[0]
                        for k in range(len(fraction))])
        low = high = iqm
        if not bootstrap.too_few(*per_env):
            w = unit * bootstrap.counts(sizes, stable_seed(seed, "curve", config))
            ends = np.array([bootstrap.interval(bootstrap.trimmed_mean(z[:, k], w))
                             for k in range(len(fraction))])
            low, high = ends[:, 0], ends[:, 1]
        curves[config] = (iqm, low, high)
    return curves
