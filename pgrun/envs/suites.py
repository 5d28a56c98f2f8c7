"""Third-party environment suites: found by id without the ``package:`` prefix where the
package is installed, and named in the error where it is not.

Importing these packages registers their environments with gymnasium; pgrun imports the
installed ones (``gym.register_envs``) only when an id is not already registered, so a
run on CartPole never pays for them.
"""

from __future__ import annotations

import importlib
import importlib.util

import gymnasium as gym

SUITES = {
    # module: (how its ids start, pip install, pgrun extra or None)
    "ale_py": (("ALE/",), "ale-py", "atari"),
    "minigrid": (("MiniGrid-", "BabyAI-"), "minigrid", "minigrid"),
    "highway_env": (("highway", "merge", "roundabout", "parking", "intersection", "racetrack",
                     "exit", "two-way", "lane-keeping", "u-turn"), "highway-env", "highway"),
    "gymnasium_robotics": (("Fetch", "HandManipulate", "HandReach", "AdroitHand", "PointMaze",
                            "AntMaze", "FrankaKitchen"), "gymnasium-robotics", None),
}


def register_installed_suites() -> list[str]:
    """Import every installed suite not imported yet (registering its envs); returns the
    modules imported. A suite that fails to import is skipped (its ids stay unknown)."""
    done = []
    for module in SUITES:
        if importlib.util.find_spec(module) is None:
            continue
        try:
            gym.register_envs(importlib.import_module(module))
        except Exception:  # noqa: BLE001 (a broken optional install: its ids stay unknown)
            continue
        done.append(module)
    return done


def suite_hint(env_id: str) -> str:
    """For an unknown id that looks like a suite's: how to install it, or how to name it
    with its package. Empty when it looks like none."""
    for module, (prefixes, pip_name, extra) in SUITES.items():
        if not env_id.startswith(prefixes):
            continue
        if importlib.util.find_spec(module) is None:
            install = (f"pip install -e '.[{extra}]' (from the pgrun checkout) or "
                       f"pip install {pip_name}" if extra else f"pip install {pip_name}")
            return (f" It looks like a {module} environment, and {module} is not installed: "
                    f"{install}; then env.id={env_id} works (or env.id={module}:{env_id}).")
        return (f" {module} is installed but registers no {env_id!r}; check the name "
                f"(`python -c 'import gymnasium, {module}; gymnasium.pprint_registry()'`).")
    return (" If a package registers it when imported, name that package first: "
            f"env.id=package:{env_id}.")
