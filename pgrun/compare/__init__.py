"""``pgrun compare``: statistics and learning curves over groups of run folders.

``load`` finds and reads run folders (``configdata`` reads a config as plain data),
``group`` selects and groups runs, ``stats`` holds the point estimators and ``bootstrap``
their intervals, ``summary`` applies them per group and environment, ``suite`` across
environments, ``report``, ``suite_report`` and ``plots`` write the results, ``command`` is
the command line.
"""

from pgrun.compare.command import main

__all__ = ["main"]
