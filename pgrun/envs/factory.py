"""Environment factory: vector envs for training and evaluation, from any gymnasium env.

Three ways to name the environment (the ``env`` config group):

* a registered id: ``env.id=CartPole-v1``, ``env.id=pgrun/GridWorld-v0``;
* gymnasium's ``module:Env-v0`` form: ``module`` is imported first (importing it registers
  ``Env-v0``), e.g. ``env.id=tests.fake_envs:FlakyCartPole-v0``;
* an entry point, ``env.entry_point=my_pkg.envs:MyEnv``: a ``gym.Env`` subclass or a
  function returning an env, called with ``env.kwargs``; nothing needs registering and
  ``env.id`` only names the environment in titles and comparisons.

Modules are imported as ``python -m`` would from the current directory (it is appended to
``sys.path`` when missing, e.g. under the ``pgrun`` console script).

**Time limit.** ``env.max_episode_steps`` when set; otherwise the registration's
``max_episode_steps``; otherwise none: episodes end when the env terminates or truncates
them itself (MiniGrid's ``max_steps``, ALE's frame cap). The limit is gymnasium's
``TimeLimit`` (it truncates, it never terminates), or the native vector env's own
``max_episode_steps`` where it takes one; one that cannot (ALE's) gets ``sync``
vectorization under ``auto``.

**Wrappers.** ``env.wrappers`` (``wrappers.py``) wrap every single env, in order; with
them ``auto`` vectorization is ``sync``.

**Spaces.** ``check_spaces`` is the one place that decides which spaces pgrun supports
(observations: see ``pgrun/obs.py``; actions: Discrete, MultiDiscrete, MultiBinary, 1-D
Box). ``make_vec_env`` calls it as soon as the env exists, so an unsupported
env fails with one message before anything trains.

**Vectorization.** gymnasium's native vector implementation (``vector_entry_point``, e.g.
the NumPy CartPole) where the environment has one; ``SyncVectorEnv`` otherwise
(``AsyncVectorEnv`` with ``env.vectorization=async``); ``ale``: the native one, which must be
ALE's (``vector=ale``). Every vector env must autoreset on the *next* step, which
``rollout.py`` handles.

Every user mistake (unknown id, missing module or attribute, a constructor that raises,
an unsupported space) is a ``ConfigError``: one paragraph naming the thing, no traceback.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec, load_env_creator
from gymnasium.vector import AutoresetMode

from pgrun.config import ConfigError
from pgrun.envs.ale_vector import is_ale_vector
from pgrun.envs.wrappers import build_wrappers
from pgrun.obs import ObsLayout, is_composite

EVAL_SEED_OFFSET = 1_000_003
"""Evaluation envs are seeded from ``seed + EVAL_SEED_OFFSET``: disjoint from the
training envs' seeds ``seed .. seed + num_envs - 1`` for any practical seed and count."""

SUPPORTED_SPACES = (
    "pgrun supports observation spaces Box of any shape, MultiBinary and MultiDiscrete (MLP "
    "policy, flattened), uint8 images H×W×C or C×H×W of at least 36×36 (CNN policy), "
    "Discrete (tabular policy), and Dict or Tuple of those (one encoder per entry, others "
    "dropped); and action spaces Discrete, MultiDiscrete and MultiBinary (categorical and "
    "Bernoulli factors) and Box with one dimension (Gaussian policy)")

_ENTRY_POINT = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


# ------------------------------------------------------------------ naming the env

def _ensure_cwd_importable() -> None:
    """Let ``my_envs:MyEnv`` import ``my_envs.py`` from the current directory, as it does
    under ``python -m pgrun`` (the ``pgrun`` console script does not put it on sys.path).
    Appended, so it never shadows an installed package."""
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.append(cwd)


def _import_module(module_name: str, what: str) -> ModuleType:
    _ensure_cwd_importable()
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        missing = err.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise ConfigError(
                f"{what}: cannot import module {module_name!r}: there is no module named "
                f"{missing!r}. Install the package that provides it, or run pgrun from the "
                "folder that holds it (or put that folder on PYTHONPATH).") from None
        raise ConfigError(
            f"{what}: importing module {module_name!r} failed: it needs {missing!r}, which "
            f"is not installed ({err}).") from None
    except Exception as err:  # noqa: BLE001 (any error in the user's module is reported)
        raise ConfigError(f"{what}: importing module {module_name!r} raised "
                          f"{_describe_exception(err)}.") from None


def _describe_exception(err: BaseException) -> str:
    """``Type: message (file:line)``, the line where it was raised."""
    frames = traceback.extract_tb(err.__traceback__)
    where = ""
    if frames:
        frame = frames[-1]
        try:
            path = os.path.relpath(frame.filename)
        except ValueError:
            path = frame.filename
        where = f" (at {path}:{frame.lineno})"
    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}{': ' + message if message else ''}{where}"


def check_env_id(env_id: str) -> EnvSpec:
    """The registered spec of ``env_id`` (``Name-vN`` or ``module:Name-vN``, whose module
    is imported first; an id unknown so far is looked up again after importing the
    installed third-party suites, ``suites.py``), or a ConfigError naming close matches
    and what to type."""
    from pgrun.envs.suites import register_installed_suites, suite_hint

    lookup, imported = env_id, None
    if ":" in env_id:
        imported, _, lookup = env_id.partition(":")
        _import_module(imported, f"env.id={env_id!r}")
    try:
        return gym.spec(lookup)
    except gym.error.Error:
        pass
    if imported is None and register_installed_suites():
        try:
            return gym.spec(lookup)
        except gym.error.Error:
            pass
    close = difflib.get_close_matches(lookup, list(gym.registry), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    after = (f" Importing {imported!r} did not register {lookup!r}." if imported
             else suite_hint(lookup))
    raise ConfigError(
        f"env.id={env_id!r} is not a registered gymnasium environment.{after}{hint} "
        "`python -c 'import gymnasium; gymnasium.pprint_registry()'` lists them all; "
        "an unregistered class or function runs with env=generic "
        "env.entry_point=module:Name.")


def load_entry_point(entry_point: str) -> Callable[..., gym.Env]:
    """The class or function named by ``module.path:Name`` (``Name`` may be dotted)."""
    return import_object(entry_point, f"env.entry_point={entry_point!r}",
                         "a gym.Env subclass or a function that returns an env",
                         "my_pkg.envs:MyEnv")


def import_object(path: str, what: str, expected: str = "a class or function",
                  example: str = "my_pkg.module:Name") -> Callable[..., Any]:
    """The callable named by ``module.path:Name`` (``Name`` may be dotted), imported as
    ``python -m`` would from the current directory; a ConfigError saying what is wrong."""
    if not isinstance(path, str) or not _ENTRY_POINT.fullmatch(path):
        raise ConfigError(f"{what}: must be module.path:Name, the module to import and "
                          f"{expected} in it, e.g. {example}.")
    module_name, _, attr = path.partition(":")
    module = _import_module(module_name, what)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=5, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            where = getattr(module, "__file__", None)
            raise ConfigError(
                f"{what}: module {module_name!r}"
                f"{f' ({os.path.relpath(where)})' if where else ''} has no attribute "
                f"{attr!r}.{hint} It must name {expected}.") from None
    if not callable(obj):
        raise ConfigError(f"{what}: {attr!r} is an object of type {type(obj).__name__}, not "
                          f"{expected}.")
    return obj


def describe(env_cfg) -> str:
    """How the config names the environment, for messages."""
    entry_point = getattr(env_cfg, "entry_point", None)
    return f"env.entry_point={entry_point!r}" if entry_point else f"env.id={env_cfg.id!r}"


def resolve_spec(env_cfg) -> EnvSpec:
    """The EnvSpec pgrun makes the environment from: the registration for ``env.id``, or an
    unregistered spec around ``env.entry_point``."""
    entry_point = getattr(env_cfg, "entry_point", None)
    if entry_point:
        creator = load_entry_point(entry_point)
        return EnvSpec(id=entry_point, entry_point=creator)
    return check_env_id(env_cfg.id)


def episode_limit(env_cfg, spec: EnvSpec) -> int | None:
    """``env.max_episode_steps``, else the registration's, else None: no time limit."""
    if env_cfg.max_episode_steps is not None:
        return int(env_cfg.max_episode_steps)
    if spec.max_episode_steps is not None:
        return int(spec.max_episode_steps)
    return None


def registered_threshold(env_cfg) -> float | None:
    """The registration's ``reward_threshold`` for ``env.id`` (None for an entry point,
    an id without one, or an id that does not resolve)."""
    if getattr(env_cfg, "entry_point", None):
        return None
    try:
        threshold = check_env_id(env_cfg.id).reward_threshold
    except Exception:  # noqa: BLE001 (an unknown id is reported when the env is made)
        return None
    return None if threshold is None else float(threshold)


def env_kwargs(env_cfg) -> dict[str, Any]:
    """``env.kwargs`` as plain Python containers (no OmegaConf nodes reach the env)."""
    kwargs = env_cfg.kwargs or {}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(kwargs, DictConfig):
            kwargs = OmegaConf.to_container(kwargs, resolve=True)
    except ImportError:  # pragma: no cover (omegaconf comes with hydra)
        pass
    return dict(kwargs)


# ------------------------------------------------------------------ spaces

def check_spaces(obs_space: gym.Space, act_space: gym.Space, what: str = "the environment") -> None:
    """Raise a ConfigError unless pgrun has a policy for these (single-env) spaces.

    The one place that decides which spaces are supported (observations: ``pgrun/obs.py``):
    the policies build for any space that passes."""
    layout = ObsLayout(obs_space)
    if not layout.supported:
        hint = (" None of its entries has a space pgrun encodes; select or convert them with "
                "gymnasium wrappers in env.wrappers." if is_composite(obs_space) else "")
        raise ConfigError(f"{what} has observation space {obs_space}, which pgrun does not "
                          f"support. {SUPPORTED_SPACES}.{hint}")
    Discrete, MultiDiscrete = gym.spaces.Discrete, gym.spaces.MultiDiscrete
    if isinstance(act_space, Discrete | MultiDiscrete):
        start = np.asarray(act_space.start)
        if (start != 0).any():
            raise ConfigError(
                f"{what} has action space {act_space}, which starts at {act_space.start}: "
                f"pgrun's categorical policies act 0..n−1 (shift in the env or a wrapper). "
                f"{SUPPORTED_SPACES}.")
        if isinstance(act_space, MultiDiscrete) and len(act_space.shape) != 1:
            raise ConfigError(f"{what} has action space {act_space}: pgrun takes a MultiDiscrete "
                              f"with one dimension of factors. {SUPPORTED_SPACES}.")
    elif isinstance(act_space, gym.spaces.MultiBinary):
        if len(act_space.shape) != 1:
            raise ConfigError(f"{what} has action space {act_space}: pgrun takes a MultiBinary "
                              f"of one dimension, MultiBinary(n). {SUPPORTED_SPACES}.")
    elif not (isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1):
        raise ConfigError(f"{what} has action space {act_space}, which pgrun does not "
                          f"support. {SUPPORTED_SPACES}.")


# ------------------------------------------------------------------ vector envs

def check_reset(spec: EnvSpec, kwargs: dict[str, Any], what: str,
                wrappers: Sequence[Callable[[gym.Env], gym.Env]] = ()) -> None:
    """Make one env and reset it: a ConfigError unless ``reset`` returns gymnasium's
    ``(observation, info)`` with an observation of the declared space's shape (else the
    vector env fails deep inside with "wrong shape" or "not enough values to unpack")."""
    import numpy as np

    try:
        env = gym.make(spec, disable_env_checker=True, **kwargs)
    except Exception:  # noqa: BLE001 (make_vec_env reports a constructor's error)
        return
    try:
        for wrap in wrappers:  # a wrapper that does not fit raises its ConfigError here
            env = wrap(env)
    except ConfigError:
        env.close()
        raise
    try:
        out = env.reset(seed=0)
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
            raise ConfigError(
                f"{what}: reset() returned {type(out).__name__} {_short(out)}, not gymnasium's "
                "(observation, info) pair; an env written for gym < 0.26 needs "
                "reset(seed=None, options=None) -> (obs, {}) and step() -> (obs, reward, "
                "terminated, truncated, info).")
        space = env.observation_space
        if isinstance(space, gym.spaces.Box) and np.shape(out[0]) != space.shape:
            raise ConfigError(
                f"{what}: reset() returned an observation of shape {np.shape(out[0])}, but "
                f"its observation_space is {space}: they must agree.")
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 (the user's reset raised)
        raise ConfigError(f"{what}: reset(seed=0) raised {_describe_exception(err)}.") from None
    finally:
        env.close()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _takes_time_limit(spec: EnvSpec) -> bool:
    """Whether the native vector env accepts ``max_episode_steps`` (gymnasium's CartPole
    does; ALE's AtariVectorEnv does not)."""
    try:
        params = inspect.signature(load_env_creator(spec.vector_entry_point)).parameters
    except Exception:  # noqa: BLE001 (cannot tell: assume not, and use a Python env)
        return False
    return "max_episode_steps" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _mode(env_cfg, spec: EnvSpec, what: str, vectorization: str | None = None) -> str:
    """The vectorization to use: ``auto`` is the native vector env where there is one and it
    can take what the config asks (wrappers, a time limit), else ``sync``."""
    mode = vectorization or env_cfg.vectorization
    wrappers = bool(getattr(env_cfg, "wrappers", None))
    limit = episode_limit(env_cfg, spec)
    new_limit = limit is not None and limit != spec.max_episode_steps
    if mode == "auto":
        native = (spec.vector_entry_point is not None and not wrappers
                  and (not new_limit or _takes_time_limit(spec)))
        return "vector_entry_point" if native else "sync"
    if mode == "ale":  # vector=ale (conf/vector/ale.yaml)
        if not is_ale_vector(spec):
            raise ConfigError(f"env.vectorization=ale (vector=ale): {what} is not one of ALE's "
                              "Atari ids, whose own vector env (ale_py's AtariVectorEnv) it "
                              "asks for; use it with an Atari preset (env=Pong-v5, "
                              "Breakout-v5, BeamRider-v5) or env.id=ALE/<Game>-v5, or drop "
                              "vector=ale.")
        mode = "vector_entry_point"
    if mode == "vector_entry_point":
        if spec.vector_entry_point is None:
            raise ConfigError(f"env.vectorization=vector_entry_point: {what} has no native "
                              "vector implementation; use auto, sync or async.")
        if wrappers:
            raise ConfigError(f"env.vectorization=vector_entry_point: {what}'s native vector "
                              "env cannot take env.wrappers; use env.vectorization=auto, sync "
                              "or async.")
        if new_limit and not _takes_time_limit(spec):
            raise ConfigError(f"env.vectorization=vector_entry_point: {what}'s native vector "
                              f"env takes no time limit (env.max_episode_steps={limit}); use "
                              "env.vectorization=auto, sync or async, or drop "
                              "env.max_episode_steps.")
    return mode


def vectorization_mode(env_cfg) -> str:
    """The vectorization ``make_vec_env`` uses for this config (``auto`` resolved)."""
    return _mode(env_cfg, resolve_spec(env_cfg), describe(env_cfg))


def make_vec_env(env_cfg, num_envs: int, *, vectorization: str | None = None,
                 wrappers: Sequence[Callable[[gym.Env], gym.Wrapper]] | None = None,
                 **make_kwargs: Any) -> gym.vector.VectorEnv:
    """``num_envs`` copies of the configured environment as one vector env, with its time
    limit, ``env.wrappers``, and supported spaces (else a ConfigError).

    ``vectorization`` overrides ``env.vectorization``; ``wrappers`` wrap each single env
    after ``env.wrappers`` (sync/async only); ``make_kwargs`` (e.g.
    ``render_mode="rgb_array"``) go to the constructor after ``env.kwargs``."""
    what = describe(env_cfg)
    spec = resolve_spec(env_cfg)
    mode = _mode(env_cfg, spec, what, vectorization)
    user_kwargs = env_kwargs(env_cfg)
    kwargs = {**user_kwargs, **make_kwargs}
    limit = episode_limit(env_cfg, spec)
    if limit is not None and limit != spec.max_episode_steps:
        kwargs["max_episode_steps"] = limit
    all_wrappers = [*build_wrappers(env_cfg), *(wrappers or [])]
    if mode != "vector_entry_point":  # Python envs: see that the first reset fits the API
        check_reset(spec, kwargs, what, all_wrappers)
    try:
        envs = gym.make_vec(spec, num_envs=num_envs, vectorization_mode=mode,
                            wrappers=all_wrappers, **kwargs)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 (a constructor's error is the user's to read)
        raise ConfigError(
            f"Could not create {what} with env.kwargs={user_kwargs} ({mode} vectorization): "
            f"{_describe_exception(err)}." + _kwargs_hint(err, user_kwargs)) from None
    try:
        autoreset = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if autoreset != AutoresetMode.NEXT_STEP:
            raise ConfigError(f"{what}: vector env autoresets in mode {autoreset}; pgrun's "
                              "rollout expects gymnasium's default next-step autoreset.")
        check_spaces(envs.single_observation_space, envs.single_action_space, what)
    except ConfigError:
        envs.close()
        raise
    return envs


def _kwargs_hint(err: Exception, user_kwargs: dict[str, Any]) -> str:
    """A hint to check env.kwargs, only where the error names one of them."""
    named = [k for k in user_kwargs if re.search(rf"\b{re.escape(str(k))}\b", str(err))]
    if not named:
        return ""
    return (f" Check env.kwargs ({', '.join(named)}) against the constructor's arguments, "
            "or drop them.")


__all__ = [
    "EVAL_SEED_OFFSET", "SUPPORTED_SPACES", "check_env_id",
    "check_spaces", "describe", "env_kwargs", "episode_limit", "import_object", "load_entry_point",
    "make_vec_env", "registered_threshold", "resolve_spec", "vectorization_mode",
]
