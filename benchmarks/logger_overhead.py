"""Training speed with the TensorBoard sink on and off (``logger.tensorboard``), side by side.

Each repeat trains the same configuration twice in this process, once with the sink off
and once on, in alternating order (off-on, on-off, ...) so that drift in the machine's load
falls on both alike. Figures per run: training steps/s (``summary.json``'s ``sps``: setup
left out, evaluation included, so every eval.csv row as well as every metrics.csv row goes
through the sink); steps per CPU second of this process (``time.process_time``, around the
whole run: less sensitive than wall time to other work on a shared machine); and the time
spent logging (``time_s.log``: the CSV row, the progress display and the sinks). Reported:
the median of each side and the median of the per-repeat ratios on/off. Target: within
3%. Example:

    nice -n 10 python benchmarks/logger_overhead.py                 # PPO CartPole, 7 repeats
    python benchmarks/logger_overhead.py --steps 50000 --repeats 9 algo=vpg
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from pgrun.cli import CONF_DIR
from pgrun.config import register
from pgrun.train import train


def measure(overrides: list[str], tensorboard: bool, run_dir: Path) -> dict[str, float]:
    """One run: steps/s (wall), steps per CPU second, seconds spent logging."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, f"logger.tensorboard={tensorboard}"])
    cpu = time.process_time()
    summary = train(cfg, run_dir)
    cpu = time.process_time() - cpu
    return {"sps": float(summary["sps"]), "cpu_sps": summary["steps"] / cpu,
            "log_s": summary["time_s"]["log"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30_000, help="total_steps per run")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("overrides", nargs="*", help="more pgrun overrides, e.g. algo=vpg")
    args = parser.parse_args()
    register()
    overrides = [f"total_steps={args.steps}", "progress=none", *args.overrides]
    off, on = [], []
    with tempfile.TemporaryDirectory() as tmp:
        measure(overrides, True, Path(tmp) / "warmup")  # imports, first-touch costs
        for i in range(args.repeats):
            order = (False, True) if i % 2 == 0 else (True, False)
            for tb in order:
                (on if tb else off).append(measure(overrides, tb, Path(tmp) / f"r{i}_{tb}"))
            print(f"repeat {i + 1}/{args.repeats}: off {off[-1]['sps']:,.0f} sps, "
                  f"on {on[-1]['sps']:,.0f} sps", flush=True)
    print(f"\n{' '.join(overrides)}; {args.repeats} interleaved repeats, medians")
    print("| logger.tensorboard | steps/s (wall) | steps per CPU s | logging, s per run |")
    print("|---|---:|---:|---:|")
    for name, runs in (("false", off), ("true", on)):
        cells = [statistics.median(r[k] for r in runs) for k in ("sps", "cpu_sps", "log_s")]
        print(f"| {name} | {cells[0]:,.0f} | {cells[1]:,.0f} | {cells[2]:.3f} |")
    for key, what in (("sps", "steps/s"), ("cpu_sps", "steps per CPU s")):
        ratio = statistics.median(b[key] / a[key] for a, b in zip(off, on, strict=True))
        print(f"{what}: median on/off ratio {ratio:.3f} ({(ratio - 1) * 100:+.1f}%)")
    print("target: within 3%")


if __name__ == "__main__":
    main()
