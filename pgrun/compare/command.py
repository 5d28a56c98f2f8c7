"""``pgrun compare PATH... [options]``: find runs, group them, print and write the report."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from pgrun.compare import suite, suite_report
from pgrun.compare.group import apply_filters, group_runs
from pgrun.compare.load import CONFIG, OUTPUT_DIR_NAME, CompareError, load_runs
from pgrun.compare.plots import plot_curves, plot_suite
from pgrun.compare.report import (
    definitions,
    markdown,
    print_report,
    print_warning,
    skipped_warnings,
    write_tables,
)
from pgrun.compare.stats import FINAL_LAST
from pgrun.compare.summary import choose_source, summarize

DESCRIPTION = """Compare runs: find every run folder under PATH... (plain runs and Hydra
multirun sweeps), group the runs by what differs in their configs except the seed, and
report per group and environment, at one budget of steps per environment: the final
return (mean ± std, IQM with a 95% bootstrap CI, median), the steps to the env's reward
threshold, the area under the learning curve, wall time and SPS; the probability of
improvement between groups; learning curves. Only complete runs are scored unless
--include-unfinished. Across two or more environments with reference scores: normalized
IQM, mean, median and optimality gap, average probability of improvement, performance
profiles and sample-efficiency curves. Writes report.md, summary.csv, improvement.csv,
runs.csv (each run's own figures) and curves.png (and suite.csv, suite_improvement.csv,
profile.png, sample_efficiency.png) to --out."""

EXAMPLES = """examples:
  pgrun compare outputs/sweeps/2026-11-21_10-00-00
  pgrun compare outputs/runs outputs/sweeps --by algo --filter env=CartPole-v1
  pgrun compare outputs/sweeps/clip --filter algo.clip_eps=0.1 --filter algo.clip_eps=0.2
  pgrun compare outputs/sweeps/x --curve train --band std --last 5 --out results/x --svg
  pgrun compare outputs/sweeps/live --include-unfinished --at-step 100000
  pgrun compare outputs/sweeps/suite --scores MyEnv-v0=-10,250"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pgrun compare", description=DESCRIPTION, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="folders to search for run folders (recursively)")
    p.add_argument("--by", metavar="KEY[,KEY]",
                   help="group by these config keys only (algo = algo.name, env = env.id)")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="keep runs whose config has KEY=VALUE (repeatable; repeating a key "
                        "keeps either value)")
    p.add_argument("--last", type=int, default=FINAL_LAST, metavar="K",
                   help=f"final return = mean of each run's last K points (default {FINAL_LAST})")
    p.add_argument("--curve", choices=["auto", "eval", "train"], default="auto",
                   help="eval.csv or training returns from metrics.csv (auto: eval when "
                        "every run has evaluations)")
    p.add_argument("--band", choices=["ci", "std"], default="ci",
                   help="curve band: 95%% bootstrap CI of the mean (default) or ± std")
    p.add_argument("--out", type=Path,
                   help=f"output folder (default: <first PATH>/{OUTPUT_DIR_NAME}/)")
    p.add_argument("--svg", action="store_true", help="also write curves.svg")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--include-unfinished", action="store_true",
                   help="also score runs that are not complete (unfinished: no summary.json "
                        "yet; interrupted); failed runs are never scored")
    p.add_argument("--at-step", type=float, metavar="N",
                   help="compare final returns, steps to threshold and AUC at step N "
                        "(default: the largest step every compared run on an env reached)")
    p.add_argument("--scores", action="append", default=[], metavar="ENV=RANDOM,REFERENCE",
                   help="normalization scores for the comparison across environments "
                        "(repeatable; default: env.random_score and env.reference_score "
                        "from the runs' configs or conf/env/<ENV>.yaml)")
    return p


def default_out(first: Path) -> Path:
    """``<first PATH>/compare``, or beside it when PATH is itself a run folder (which
    pgrun compare never writes into)."""
    base = first.parent if (first / CONFIG).is_file() else first
    return base / OUTPUT_DIR_NAME


def run(args: argparse.Namespace, argv: list[str], console: Console) -> list[Path]:
    """The whole comparison; returns the files written."""
    if args.last < 1:
        raise CompareError(f"--last {args.last}: must be ≥ 1")
    if args.at_step is not None and not args.at_step > 0:
        raise CompareError(f"--at-step {args.at_step:g}: must be > 0")
    out = args.out or default_out(args.paths[0])
    runs, skipped = load_runs(args.paths, exclude=[out])
    for warning in skipped_warnings(skipped, limit=3):
        print_warning(console, warning)
    if not runs:
        where = ", ".join(map(str, args.paths))
        raise CompareError(f"no runs found under {where} (a run folder has .hydra/config.yaml "
                           "and metrics.csv or eval.csv)")
    runs = apply_filters(runs, args.filter)
    source, runs, source_warnings = choose_source(runs, args.curve)
    groups, group_warnings = group_runs(runs, args.by.split(",") if args.by else None)
    given = suite.parse_scores(args.scores)
    result = summarize(groups, source, args.last, args.seed, args.include_unfinished,
                       args.at_step)
    table, pairs = result.table, result.pairs
    across, suite_warnings = suite.aggregate(result, source, given, args.seed)
    notes = definitions(source, args.last, args.band, args.seed)
    late_warnings = source_warnings + group_warnings + result.warnings + suite_warnings
    print_report(console, table, pairs, notes, late_warnings, args.at_step)
    if across is not None:
        for line in suite_report.verdict(across):
            console.print(f"across {len(across.envs)} environments: "
                          f"{escape(line.replace('**', ''))}", highlight=False)

    out.mkdir(parents=True, exist_ok=True)
    written = plot_curves(groups, result, source, args.band, args.seed, out / "curves.png",
                          args.svg)
    written += write_tables(out, table, pairs, result.runs)
    section: list[str] = []
    if across is not None:
        figures = plot_suite(across, out / "profile.png", out / "sample_efficiency.png",
                             args.svg)
        written += figures + suite_report.write_tables(out, across)
        section = suite_report.markdown(across, [p.name for p in figures if p.suffix == ".png"])
    command = "pgrun compare " + shlex.join(argv)
    report = markdown(command, table, pairs, notes, skipped_warnings(skipped) + late_warnings,
                      "curves.png", args.at_step, section)
    (out / "report.md").write_text(report)
    written.append(out / "report.md")
    console.print(f"wrote {', '.join(p.name for p in written)} to {out} (definitions of "
                  "every figure in report.md)", highlight=False, soft_wrap=True)
    return written


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200)
    try:
        run(args, argv, console)
    except CompareError as err:
        print(f"pgrun compare: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # e.g. an --out folder that cannot be written
        print(f"pgrun compare: {err.strerror or err}: {err.filename or ''}", file=sys.stderr)
        return 1
    return 0
