"""Optional dependencies that some environments need, checked before an env is built so
the error names pgrun's extra rather than failing deep inside gymnasium."""

from __future__ import annotations

import importlib

from pgrun.config import ConfigError

EXTRAS = {
    # entry-point prefix of the registered env: (module to import, pgrun extra)
    "gymnasium.envs.box2d": ("Box2D", "box2d"),
    "gymnasium.envs.mujoco": ("mujoco", "mujoco"),
}


def env_id_of(env_cfg) -> str | None:
    """``env.id``, or None where it is unset (an env given by ``entry_point`` only)."""
    try:
        return env_cfg.get("id")
    except Exception:  # noqa: BLE001 (a missing mandatory value or an unresolved interpolation)
        return None


def check_env_dependencies(env_id: str | None) -> None:
    """ConfigError naming the extra to install when ``env_id`` is a registered gymnasium
    env whose package (Box2D for LunarLander, mujoco for Hopper) is missing; silent otherwise (unknown
    ids are the env factory's to report)."""
    if not env_id:
        return
    import gymnasium as gym

    try:
        entry_point = gym.spec(env_id).entry_point
    except Exception:  # noqa: BLE001 (not registered: the env factory reports it)
        return
    if not isinstance(entry_point, str):
        return
    for prefix, (module, extra) in EXTRAS.items():
        if not entry_point.startswith(prefix):
            continue
        try:
            importlib.import_module(module)
        except ImportError:
            raise ConfigError(
                f"env.id={env_id} needs the {module} package, which is not installed. Install "
                f"pgrun's {extra} extra: pip install -e '.[{extra}]' (from the pgrun checkout; "
                f"or pip install 'gymnasium[{extra}]').") from None
