"""``pgrun compare``: statistics and learning curves over groups of run folders.

``load`` finds and reads run folders, ``group`` selects and groups runs, ``stats`` holds
the estimators, ``summary`` applies them per group, ``report`` and ``plots`` write the
results, ``command`` is the command line.
"""

from pgrun.compare.command import main

__all__ = ["main"]
