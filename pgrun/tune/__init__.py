"""``pgrun tune``: hyperparameter search with Optuna over pgrun runs (see ``command.py``)."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help", "help"):
        from pgrun.tune.command import USAGE

        print(USAGE)
        return 0
    try:
        import optuna  # noqa: F401
    except ImportError:
        print("pgrun tune needs Optuna: pip install -e '.[tune]' (from pgrun's checkout).",
              file=sys.stderr)
        return 2
    from pgrun.cli import CONF_DIR
    from pgrun.config import ConfigError
    from pgrun.tune.command import prepare, run

    try:
        return run(prepare(argv, CONF_DIR))
    except ConfigError as err:
        print(f"pgrun tune: {err}", file=sys.stderr)
        return 2
