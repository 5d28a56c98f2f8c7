"""What a finished search leaves in its study folder: ``best.yaml`` (a ``conf/hparams``
preset), ``trials.csv`` and Optuna's plots (history, parameter importances, intermediate
values; matplotlib PNGs)."""

from __future__ import annotations

import shlex
import warnings
from pathlib import Path
from typing import Any

import yaml

from pgrun.tune import space


def nested(flat: dict[str, Any]) -> dict:
    """{"algo.lr": 1} → {"algo": {"lr": 1}}."""
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out.get(key, {}), value) if isinstance(value, dict) and isinstance(
            out.get(key), dict) else value
    return out


def best_yaml(path: Path, best, plan) -> None:
    """The best trial's params as a ``# @package _global_`` preset: the pair's current
    preset (if any), the budget the search used, and the params found."""
    preset_file = plan.conf_dir / "hparams" / f"{plan.algo}_{plan.env}.yaml"
    preset = yaml.safe_load(preset_file.read_text()) if preset_file.is_file() else {}
    found = {k: space.decode(v) for k, v in best.params.items()}
    data = merge(merge(preset or {}, {"total_steps": plan.total_steps}), nested(found))
    low, high = (best.user_attrs.get("ci") or [None, None])
    ci = f" [{low:.4g}, {high:.4g}]" if low is not None and high is not None else ""
    again = " ".join(shlex.quote(o) for o in plan.overrides)
    groups = " ".join(f"{g}={v}" for g, v in (("algo", plan.algo), ("env", plan.env))
                      if not any(o.startswith(f"{g}=") for o in plan.overrides))
    runs = f"{groups} {again}".strip()
    best_args = " ".join(shlex.quote(space.override(k, v)) for k, v in found.items())
    header = f"""# @package _global_
# pgrun tune: trial {best.number} of the study in {plan.study_dir}, the best by
# {plan.objective} = {best.value:.4g}{ci} (IQM over seeds {plan.seeds[0]}–{plan.seeds[-1]}, bootstrap 95% interval),
# trained with: {runs}.
# {'It is ' + str(preset_file) + ' (kept below) with' if preset else 'It holds'} the searched params and the search's budget.
# To make it the preset for algo={plan.algo} env={plan.env}:
#   cp {path} {preset_file}
# Check it on fresh seeds first, against the defaults:
#   pgrun train -m {runs} {best_args} seed='range(100,110)' hydra.sweep.dir={plan.study_dir}/confirm/tuned
#   pgrun train -m {runs} seed='range(100,110)' hydra.sweep.dir={plan.study_dir}/confirm/default
#   pgrun compare {plan.study_dir}/confirm
"""
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


PLOTS = {"history.png": "plot_optimization_history",
         "importance.png": "plot_param_importances",
         "intermediate.png": "plot_intermediate_values"}


def plots(study, folder: Path) -> list[str]:
    """Optuna's matplotlib plots as PNGs; returns a note for each one it could not draw
    (importance needs two complete trials in which some param varies)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    notes = []
    for name, function in PLOTS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                ax = getattr(vis, function)(study)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            fig.savefig(folder / name, dpi=100)
            plt.close(fig)
        except Exception as err:  # noqa: BLE001 (a plot is a bonus, never the search's failure)
            notes.append(f"{name} not drawn: {type(err).__name__}: {err}")
            plt.close("all")
    return notes


def trials_csv(study, path: Path) -> None:
    """One row per trial: number, state, value, duration, params, user attributes."""
    frame = study.trials_dataframe(attrs=("number", "state", "value", "duration", "params",
                                          "user_attrs"))
    frame.to_csv(path, index=False)
