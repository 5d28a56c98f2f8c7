"""Config schema (structured configs in Hydra's ConfigStore) and range checks.

The schema makes Hydra reject a misspelt key or a value of the wrong type while it
composes; ``validate`` then checks ranges before anything is built, so a bad value
fails in a second, not after an hour of training.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


class ConfigError(ValueError):
    """A user mistake in the configuration: reported as a short message, no traceback."""


def _env_kwargs() -> Any:
    """``env.kwargs``'s default: an empty mapping that accepts new keys, so that
    ``env.kwargs='{size: 3}'`` and ``env.kwargs.size=3`` work without Hydra's ``+``
    (the constructor rejects a misspelt one)."""
    from omegaconf import OmegaConf

    return OmegaConf.create({}, flags={"struct": False})


@dataclass
class EnvConfig:
    """The environment (see pgrun/envs/factory.py): a registered id (or gymnasium's
    ``module:Env-v0``), or an unregistered ``entry_point`` (then ``id`` only names it)."""

    id: str = MISSING
    entry_point: str | None = None  # module.path:Name, a gym.Env subclass or env-making function
    num_envs: int = 8
    max_episode_steps: int | None = None  # null: the registration's limit, else none
    reward_threshold: float | None = None
    # pgrun compare's normalized score (x − random) / (reference − random); never changes a run
    random_score: float | None = None  # a uniformly random policy's mean return
    reference_score: float | None = None  # a good policy's return (cited in conf/env/*.yaml)
    vectorization: str = "auto"
    # training only: a lost life (info["lives"] drops) is terminal for the learning target,
    # the game goes on; metrics and evaluation count whole games (pgrun/rollout.py)
    life_loss_terminal: bool = False
    kwargs: dict[str, Any] = field(default_factory=_env_kwargs)  # for the env's constructor
    wrappers: list[Any] = field(default_factory=list)  # [{_target_: pkg.mod.Wrapper, kwarg: v}, ...] (pgrun/envs/wrappers.py)


@dataclass
class PolicyConfig:
    """The policy (and value) networks; see pgrun/policies.py and pgrun/distributions.py."""

    kind: str = "auto"  # auto (tabular for Discrete observations, cnn for images, else mlp) | mlp | tabular | cnn
    module: str | None = None  # a user's nn.Module, pkg.mod:Class (see pgrun/policies.py), instead of kind
    kwargs: dict[str, Any] = field(default_factory=_env_kwargs)  # for the user module's constructor
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"
    shared: bool = False
    ortho_init: bool = True
    log_std_init: float = 0.0  # Box actions: initial log σ of the Gaussian head
    state_dependent_std: bool = False  # Box actions: σ(s) from the head instead of a parameter
    action_bounds: str = "clip"  # Box actions: clip | tanh (how samples reach the bounds)
    cnn_precision: str = "float32"  # float32 | bfloat16 (the cnn body's layers under torch.autocast)


@dataclass
class NormalizeConfig:
    """Observation normalization and reward scaling (pgrun/normalize.py); off by default."""

    obs: bool = False  # running mean/std of observations; frozen in evaluation, saved in checkpoints
    reward: bool = False  # divide rewards by the running std of the discounted return (learning only)
    clip_obs: float = 10.0
    clip_reward: float = 10.0
    gamma: float | None = None  # discount of the return whose std scales rewards (null: algo.gamma)
    reward_sign: bool = False  # learn from sign(r) ∈ {-1, 0, 1} (Atari's reward clipping; learning only, before scaling)
    epsilon: float = 1e-8


@dataclass
class EvalConfig:
    interval: int = 10_000
    episodes: int = 10
    deterministic: bool = True
    num_envs: int = 10


@dataclass
class CheckpointConfig:
    """When to write checkpoint.pt (see pgrun/checkpoint.py for what it holds)."""

    enabled: bool = True
    every: int = 50  # updates between checkpoints (0: only at the end); one is always written at the end
    stop_after_updates: int | None = None  # checkpoint and stop (status interrupted) after this many updates


@dataclass
class LoggerConfig:
    """Extra sinks beside metrics.csv and eval.csv (pgrun/sinks.py); they never change a run."""

    tensorboard: bool = False  # event files in the run folder (pip install 'pgrun[tb]')
    wandb: bool = False  # a Weights & Biases run (pip install 'pgrun[wandb]'), offline unless WANDB_MODE says otherwise
    project: str = "pgrun"  # W&B project
    group: str | None = None  # W&B group (e.g. one per sweep)
    tags: list[str] = field(default_factory=list)  # W&B tags


@dataclass
class TrainConfig:
    algo: Any = MISSING
    env: EnvConfig = MISSING
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    total_steps: Any = 100_000
    torch_threads: int = 1  # threads per run for torch and NumPy's BLAS
    device: str = "cpu"  # where the update runs: cpu | cuda | cuda:N | auto (cuda when available); envs step on the CPU
    accelerate: bool = True  # NumPy layers for plain MLP/tabular bodies where exact (pgrun/accelerate.py)
    progress: str = "auto"
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    resume: Any = "auto"  # auto: continue an unfinished run in the folder, skip a complete one; true; false


ACTIVATION_NAMES = ("tanh", "relu", "elu", "gelu")
CNN_PRECISIONS = ("float32", "bfloat16")  # policy.cnn_precision (policies.NatureCNN)
ACTION_BOUNDS = ("clip", "tanh")  # how Gaussian samples reach a Box's bounds (distributions.py)
POLICY_KINDS = ("auto", "mlp", "tabular", "cnn")
VECTORIZATION = ("auto", "vector_entry_point", "sync", "async", "ale")
PROGRESS = ("auto", "rich", "plain", "none")
RESUME = ("auto", True, False)


def run_name(env_choice: str, env_id: str) -> str:
    """The env part of a run folder's name: the env option, or for ``env=generic`` the
    env id (or entry point) with every character unsafe in a path replaced by ``_``."""
    if env_choice != "generic":
        return env_choice
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(env_id)).strip("_") or "generic"


def _algorithms() -> dict:
    from pgrun.algos import ALGORITHMS  # imported late: the algorithms import this module

    return ALGORITHMS


def schema_defaults(config: dict) -> dict:
    """The schema's default of every key that has one, nested as ``config`` is (``algo``
    from the config's algorithm's ``Config``): what a key absent from an older run's
    config means (``runfolder.config_identity``)."""
    tree = _defaults(TrainConfig)
    tree["env"] = _defaults(EnvConfig)
    algo = _algorithms().get((config.get("algo") or {}).get("name"))
    if algo is not None:
        tree["algo"] = _defaults(algo.Config)
    return tree


def _defaults(cls) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        elif f.default is not dataclasses.MISSING and f.default != MISSING:
            value = f.default
        else:
            continue
        out[f.name] = _defaults(type(value)) if dataclasses.is_dataclass(value) else value
    return out


def register_resolvers() -> None:
    """The resolvers conf/config.yaml uses: ``pgrun_run_name`` (run-folder names, resolved
    wherever a job runs, launcher workers included) and ``pgrun_algos`` (--help). Cheap:
    the algorithms (torch) are imported only when ``pgrun_algos`` resolves."""
    if not OmegaConf.has_resolver("pgrun_run_name"):
        OmegaConf.register_new_resolver("pgrun_run_name", run_name)
    if not OmegaConf.has_resolver("pgrun_algos"):
        OmegaConf.register_new_resolver("pgrun_algos", lambda: ", ".join(_algorithms()))


def register() -> None:
    """Put the schemas where conf/ can extend them (``/schema/...@_here_``; this imports
    the algorithms, and torch), and the resolvers (``register_resolvers``)."""
    register_resolvers()
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(group="schema/env", name="env", node=EnvConfig)
    for name, algo in _algorithms().items():
        cs.store(group="schema/algo", name=name, node=algo.Config)


# ---------------------------------------------------------------------------- validation

_UNIT = ("gamma", "gae_lambda", "backtrack_coef")
_POSITIVE = ("lr", "vf_lr", "clip_eps", "adam_eps", "target_kl", "max_grad_norm", "kl_target",
             "kl_beta", "max_kl")
_COUNTS = ("group_size", "episodes_per_update", "vf_iters", "num_steps", "num_epochs",
           "num_minibatches", "vf_minibatches", "cg_iters", "backtrack_iters")
_NONNEGATIVE = ("ent_coef", "vf_coef", "kl_coef", "cg_damping")
"""Range rules by algorithm key name (an algorithm adds its own in ``Algorithm.check``)."""
MAX_NAME = 500  # characters in env.id / env.entry_point
MAX_SEED = 2**32 - 1  # NumPy's legacy global seed, which seed_everything sets, takes 32 bits


def _finite(value: Any) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def _collects_whole_episodes(algo_name: str) -> bool:
    """Whether the algorithm cuts its batches into whole episodes (overrides ``episodes``)."""
    from pgrun.algos.base import Algorithm

    algo = _algorithms().get(algo_name)
    return algo is not None and algo.episodes is not Algorithm.episodes


def validate(cfg: DictConfig) -> None:
    """Range checks for every figure the schema cannot express; raises ConfigError
    listing all problems at once."""
    problems: list[str] = []

    def check(ok: bool, key: str, value: Any, rule: str) -> None:
        if not ok:
            problems.append(f"{key}={value!r}: {rule}")

    algo = cfg.algo
    for key, value in algo.items():
        full = f"algo.{key}"
        if value is None:
            continue
        if not _finite(value):
            check(False, full, value, "must be a finite number"
                  + (" (null turns it off)" if key in ("max_grad_norm", "target_kl") else ""))
        elif key in _UNIT:
            check(0.0 <= value <= 1.0, full, value, "must be in [0, 1]")
        elif key in _POSITIVE:
            check(value > 0, full, value, "must be > 0")
        elif key in _COUNTS:
            check(value >= 1, full, value, "must be an integer ≥ 1")
        elif key in _NONNEGATIVE:
            check(value >= 0, full, value, "must be ≥ 0")

    env = cfg.env
    from omegaconf.errors import OmegaConfBaseException

    try:
        env_id = env.id
    except OmegaConfBaseException:  # ??? or env=generic's ${.entry_point} without one
        env_id = None
    check(env_id is not None or env.get("entry_point") is not None, "env.id", env_id,
          "name the environment: env.id=<registered id, or module:Env-v0>, or "
          "env.entry_point=<module>:<class or function> (env=generic)")
    for key in ("id", "entry_point"):
        value = env_id if key == "id" else env.get("entry_point")
        if isinstance(value, str) and len(value) > MAX_NAME:
            problems.append(f"env.{key}={value[:40]!r}…: {len(value):,} characters; a name of "
                            f"an environment has at most {MAX_NAME}")
    check(env.num_envs >= 1, "env.num_envs", env.num_envs, "must be an integer ≥ 1")
    if env.max_episode_steps is not None:
        check(env.max_episode_steps >= 1, "env.max_episode_steps", env.max_episode_steps,
              "must be ≥ 1 or null")
    check(env.vectorization in VECTORIZATION, "env.vectorization", env.vectorization,
          f"must be one of {', '.join(VECTORIZATION)}")
    if env.reward_threshold is not None:
        check(_finite(env.reward_threshold), "env.reward_threshold", env.reward_threshold,
              "must be a finite number or null")
    check(isinstance(env.get("kwargs"), DictConfig | dict) or env.get("kwargs") is None,
          "env.kwargs", env.get("kwargs"), "must be a mapping of constructor arguments, e.g. "
          "env.kwargs='{size: 3}' or env.kwargs.size=3")
    from pgrun.envs.wrappers import wrapper_specs

    try:
        wrapper_specs(env)
    except ConfigError as err:
        problems.append(str(err))
    if env.get("life_loss_terminal") and _collects_whole_episodes(algo.name):
        problems.append(
            f"env.life_loss_terminal=true: algo={algo.name} learns from whole episodes (it "
            f"collects them and sums their rewards), so a life-loss terminal would cut its "
            f"returns at each lost life; it is for algorithms that learn from fixed-length "
            f"rollouts with a critic's bootstrap (ppo, vpg, ppo_kl, trpo). Set "
            f"env.life_loss_terminal=false.")
    if not problems:  # the algorithm's own checks assume the generic ranges hold
        problems += _algorithms()[algo.name].check(algo, env)

    pol = cfg.policy
    check(all(h >= 1 for h in pol.hidden_sizes), "policy.hidden_sizes", list(pol.hidden_sizes),
          "every layer needs ≥ 1 unit ([] for a linear policy)")
    check(pol.activation in ACTIVATION_NAMES, "policy.activation", pol.activation,
          f"must be one of {', '.join(ACTIVATION_NAMES)}")
    check(pol.kind in POLICY_KINDS, "policy.kind", pol.kind, f"must be one of {', '.join(POLICY_KINDS)}")
    check(pol.action_bounds in ACTION_BOUNDS, "policy.action_bounds", pol.action_bounds,
          f"must be one of {', '.join(ACTION_BOUNDS)}")
    check(_finite(pol.log_std_init), "policy.log_std_init", pol.log_std_init,
          "must be a finite number")
    check(pol.get("cnn_precision", "float32") in CNN_PRECISIONS, "policy.cnn_precision",
          pol.get("cnn_precision"), f"must be one of {', '.join(CNN_PRECISIONS)}")
    if pol.get("module") is not None:
        check(":" in pol.module, "policy.module", pol.module,
              "must name a class or function as pkg.module:Name")
    norm = cfg.normalize
    for key in ("clip_obs", "clip_reward", "epsilon"):
        check(norm[key] > 0 and _finite(norm[key]), f"normalize.{key}", norm[key],
              "must be a finite number > 0")
    if norm.gamma is not None:
        check(0.0 <= norm.gamma <= 1.0, "normalize.gamma", norm.gamma, "must be in [0, 1] or null")

    ev = cfg.eval
    check(ev.interval >= 0, "eval.interval", ev.interval, "must be ≥ 0 (0 turns evaluation off)")
    check(ev.episodes >= 1, "eval.episodes", ev.episodes, "must be an integer ≥ 1")
    check(ev.num_envs >= 1, "eval.num_envs", ev.num_envs, "must be an integer ≥ 1")

    total = cfg.total_steps
    ok = isinstance(total, int | float) and not isinstance(total, bool) and _finite(total) \
        and total >= 1 and float(total).is_integer()
    check(ok, "total_steps", total, "must be a whole number ≥ 1 (2e5 is fine)")
    check(cfg.device == "auto" or re.fullmatch(r"cpu|cuda(:\d+)?", str(cfg.device)) is not None,
          "device", cfg.device, "must be auto, cpu, cuda or cuda:N")
    check(cfg.torch_threads >= 1, "torch_threads", cfg.torch_threads, "must be ≥ 1")
    check(cfg.progress in PROGRESS, "progress", cfg.progress, f"must be one of {', '.join(PROGRESS)}")
    check(0 <= cfg.seed <= MAX_SEED, "seed", cfg.seed, f"must be in [0, {MAX_SEED}] (2^32 − 1)")
    ck = cfg.checkpoint
    check(ck.every >= 0, "checkpoint.every", ck.every, "must be ≥ 0 (0: only at the end)")
    if ck.stop_after_updates is not None:
        check(ck.stop_after_updates >= 1, "checkpoint.stop_after_updates", ck.stop_after_updates,
              "must be ≥ 1 or null")
    check(cfg.resume in RESUME, "resume", cfg.resume, "must be auto, true or false")

    if problems:
        raise ConfigError("Invalid configuration:\n  " + "\n  ".join(problems))


def unknown_keys(cfg: DictConfig) -> list[str]:
    """Keys of ``cfg`` that the schema does not define (added with ``+key=value``): nothing
    in pgrun reads them. ``env.kwargs`` and ``policy.kwargs`` are free-form and not checked;
    ``hydra`` is Hydra's."""
    algo = _algorithms().get(OmegaConf.select(cfg, "algo.name") or "")
    algo_schema = algo.Config if algo is not None else None

    def walk(node: Any, schema: Any, prefix: str) -> list[str]:
        if not dataclasses.is_dataclass(schema) or not isinstance(node, DictConfig | dict):
            return []
        types = typing.get_type_hints(schema)
        found = []
        for key in node:
            name = f"{prefix}{key}"
            if name == "hydra":
                continue
            if key not in types:
                found.append(name)
            elif name not in ("env.kwargs", "policy.kwargs"):
                found += walk(node[key], algo_schema if name == "algo" else types[key],
                              f"{name}.")
        return found

    return walk(cfg, TrainConfig, "")
