"""Bad inputs, faults and malicious run folders against the real CLI: the README's
reliability table.

    python benchmarks/reliability.py [--out benchmarks/results/reliability.md]

Every case runs ``python -m pgrun ...`` in a fresh temporary folder and is *handled
cleanly* when: the exit status is the documented one, stderr has no traceback and is
short, and the files are as promised (no run folder after a refused ``pgrun train``, a
refused folder byte for byte as it was, no marker file written by hostile code, no
temporary files after a failed write). Takes about four minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MARKER: Path | None = None  # the file hostile code would write
TINY = ["total_steps=1500", "eval.interval=500", "eval.episodes=2", "progress=none"]

BAD_TRAIN = [  # (overrides, what it is)
    *[[f"algo.{k}={v}"] for k, v in [
        ("gamma", 1.5), ("gamma", -0.1), ("gamma", "nan"), ("gae_lambda", 2), ("lr", -1),
        ("lr", 0), ("lr", "inf"), ("lr", "nan"), ("lr", "abc"), ("clip_eps", 0),
        ("clip_eps", "inf"), ("vf_coef", -1), ("vf_coef", "inf"), ("ent_coef", -1),
        ("num_epochs", 0), ("num_minibatches", 0), ("num_minibatches", 100000),
        ("num_steps", 0), ("max_grad_norm", "inf"), ("max_grad_norm", -1), ("target_kl", 0),
        ("clip_epss", 0.1)]],
    *[[f"{k}={v}"] for k, v in [
        ("total_steps", "abc"), ("total_steps", 0), ("total_steps", "inf"), ("total_steps", 1.5),
        ("seed", -1), ("seed", 4294967296), ("seed", "abc"), ("env.num_envs", 0),
        ("env.max_episode_steps", 0), ("env.reward_threshold", "nan"),
        ("env.reward_threshold", "inf"), ("env.kwargs", 5), ("env.vectorization", "foo"),
        ("policy.activation", "swish"), ("policy.hidden_sizes", "[0]"), ("policy.kind", "foo"),
        ("eval.interval", -1), ("eval.episodes", 0), ("progress", "foo"), ("resume", "maybe"),
        ("torch_threads", 0), ("checkpoint.every", -1), ("normalize.clip_obs", 0),
        ("normalize.clip_obs", "inf"), ("algo", "foo"), ("env", "Foo"),
        ("env.id", "NoSuchEnv-v0"), ("env.id", "no_such_pkg:Foo-v0")]],
    *[["env=generic", f"env.entry_point=tests.custom_env:{name}"]
      for name in ("Nope", "Broken", "DictObs", "MultiBinaryActions", "WrongShape",
                   "OldApiReset")],
    ["env=generic", "env.entry_point=no_such_pkg.envs:MyEnv"],
    ["env=generic", "env.id=" + "X" * 20000],
    ["env.id=" + "X" * 20000],
    ["algo=reinforce", "algo.episodes_per_update=6", "env.num_envs=4"],
    ["algo=grpo", "env.num_envs=3"],
]


def run(*args, cwd=REPO, timeout=300, **kwargs):
    if MARKER is not None:
        MARKER.unlink(missing_ok=True)  # each case shows only what it ran itself
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(REPO)}
    env.pop("HYDRA_FULL_ERROR", None)
    env.update(kwargs.pop("env", {}))
    return subprocess.run([sys.executable, "-m", "pgrun", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def clean(out, codes=(2,)) -> str:
    """'' when the command failed as documented, else what went wrong."""
    if out.returncode not in codes:
        return f"exit {out.returncode}, expected {codes}"
    if "Traceback" in out.stderr:
        return "traceback"
    if len(out.stderr) > 2000:
        return f"{len(out.stderr)} characters on stderr"
    return ""


def fingerprint(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def bad_train(tmp: Path) -> list[tuple[str, str]]:
    results = []
    file = tmp / "a_file"
    file.write_text("x")
    cases = [*BAD_TRAIN, [f"hydra.run.dir={file}"], [f"hydra.run.dir={file}/run"],
             ["hydra.run.dir=/proc/pgrun-run"], [f"hydra.run.dir={tmp}/{'d' * 300}"]]
    for i, overrides in enumerate(cases):
        folder = tmp / f"bad{i}"
        args = ["train", f"hydra.run.dir={folder}", *TINY, *overrides]
        out = run(*args)
        problem = clean(out) or ("left a run folder" if folder.exists() else "")
        results.append((" ".join(o[:60] for o in overrides), problem))
    return results


def bad_eval(tmp: Path, good: Path) -> list[tuple[str, str]]:
    (tmp / "empty").mkdir()
    (tmp / "corrupt").mkdir()
    (tmp / "corrupt" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    cases = [[str(tmp / "missing")], [str(tmp / "empty")], [str(tmp / "corrupt")],
             [str(good), "episodes=0"], [str(good), "deterministic=maybe"],
             [str(good), "epsiodes=3"], [str(good), "seed=abc"], [str(good), "--foo"],
             [str(good), str(good)], []]
    return [(" ".join(c) or "(no arguments)", clean(run("eval", *c))) for c in cases]


def bad_compare(tmp: Path) -> list[tuple[str, str]]:
    (tmp / "nothing").mkdir()
    broken = tmp / "broken" / "run" / ".hydra"
    broken.mkdir(parents=True)
    (broken / "config.yaml").write_text("algo: [unclosed\n")
    cases = [[str(tmp / "missing")], [str(tmp / "nothing")], [str(tmp / "broken")],
             [str(tmp / "nothing"), "--last", "0"], [str(tmp / "nothing"), "--band", "foo"]]
    return [(" ".join(c), clean(run("compare", *c), codes=(1, 2))) for c in cases]


def hostile_folders(tmp: Path, good: Path) -> list[tuple[str, str]]:
    """Run folders made to run code: the marker file must never appear."""
    import torch
    import yaml

    global MARKER
    marker = MARKER = tmp / "marker"
    ckpt = torch.load(good / "checkpoint.pt", weights_only=True)
    cases = {"env.entry_point=os:system with env.kwargs.command":
             {"entry_point": "os:system", "kwargs": {"command": f"touch {marker}"}},
             "env.entry_point=module:function": {"entry_point": "tests.marker_module:make"},
             "env.id=module:Env-v0 (imports the module)": {"id": "tests.marker_module:X-v0"},
             "env.kwargs with ${oc.env:...}": {"kwargs": {"secret": "${oc.env:HOME}"}}}
    results = []
    for name, env in cases.items():
        folder = tmp / f"hostile{len(results)}"
        shutil.copytree(good, folder)
        config = json.loads(json.dumps(ckpt["config"]))
        config["env"].update(env)
        torch.save({**ckpt, "config": config}, folder / "checkpoint.pt")
        (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
        for command, codes in ((["eval", str(folder)], (2,)),
                               (["compare", str(folder), "--out", str(tmp / "cmp")], (0, 1, 2))):
            out = run(*command, env={"PGRUN_TEST_MARKER": str(marker)})
            problem = clean(out, codes) or ("code ran" if marker.exists() else "")
            results.append((f"{command[0]}: {name}", problem))
    folder = tmp / "yaml_tag"
    shutil.copytree(good, folder)
    (folder / ".hydra" / "config.yaml").write_text(
        f"algo: !!python/object/apply:os.system ['touch {marker}']\n")
    out = run("compare", str(folder), "--out", str(tmp / "cmp"))
    results.append(("compare: a python/object YAML tag in .hydra/config.yaml",
                    clean(out, codes=(0, 1, 2)) or ("code ran" if marker.exists() else "")))

    class Payload:  # a pickle that runs a command when loaded
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    folder = tmp / "pickle"
    folder.mkdir()
    torch.save({"agent": {}, "config": {}, "x": Payload()}, folder / "checkpoint.pt")
    out = run("eval", str(folder))
    results.append(("eval: a pickle payload in checkpoint.pt",
                    clean(out) or ("code ran" if marker.exists() else "")))
    resume_dir = tmp / "pickle_resume"
    resume_dir.mkdir()
    (resume_dir / "checkpoint.pt").write_bytes((folder / "checkpoint.pt").read_bytes())
    out = run("train", f"hydra.run.dir={resume_dir}", *TINY)
    results.append(("train (resume): a pickle payload in checkpoint.pt",
                    clean(out) or ("code ran" if marker.exists() else "")))
    return results


def faults(tmp: Path) -> list[tuple[str, str]]:
    results = []
    # a refused resume (another config) leaves the folder byte for byte
    done = tmp / "done"
    run("train", f"hydra.run.dir={done}", *TINY)
    before = fingerprint(done)
    out = run("train", f"hydra.run.dir={done}", *TINY, "algo.lr=0.01")
    results.append(("resume with another config is refused, folder unchanged",
                    clean(out) or ("folder changed" if fingerprint(done) != before else "")))
    # a sweep rerun with changed values
    sweep = tmp / "sweep"
    run("train", "-m", f"hydra.sweep.dir={sweep}", "seed=0,1", *TINY)
    runs = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    before = [fingerprint(p) for p in runs]
    out = run("train", "-m", f"hydra.sweep.dir={sweep}", "seed=0,1", "algo.lr=0.01", *TINY)
    results.append(("sweep rerun with changed values: refused runs unchanged",
                    clean(out, codes=(1,)) or ("folder changed" if [fingerprint(p) for p in runs]
                                               != before else "")))
    # kill -9 mid-run, then a second writer while one runs, then resume
    long = ["total_steps=40000", "eval.interval=2000", "eval.episodes=2", "progress=none",
            "checkpoint.every=5"]
    folder = tmp / "killed"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "pgrun", "train", f"hydra.run.dir={folder}",
                             *long], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    metrics = folder / "metrics.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
            metrics.exists() and metrics.read_text().count("\n") > 15):
        time.sleep(0.05)
    out = run("train", f"hydra.run.dir={folder}", *long)
    results.append(("a second writer on a running run folder is refused",
                    clean(out) or ("" if "being written by another" in out.stderr
                                   else "no lock message")))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    out = run("train", f"hydra.run.dir={folder}", *long)
    rows = metrics.read_text().splitlines()[1:]
    updates = [int(r.split(",")[0]) for r in rows]
    results.append(("kill -9, then resume: every update once, lock recovered",
                    clean(out, codes=(0,)) or ("" if updates == list(range(1, len(rows) + 1))
                                               else "rows lost or duplicated")))
    # a full disk (a file-size limit) while writing the checkpoint
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))

    folder = tmp / "full"
    out = run("train", f"hydra.run.dir={folder}", *TINY, preexec_fn=limit,
              env={"PYTHONDONTWRITEBYTECODE": "1"})
    results.append(("disk full while writing the checkpoint",
                    clean(out, codes=(1,)) or ("temporary file left"
                                               if list(folder.glob(".*.tmp")) else "")))
    # NaN from the environment; NaN threshold
    folder = tmp / "nan"
    out = run("train", f"hydra.run.dir={folder}", *TINY, "env=generic",
              "env.id=tests.fake_envs:FlakyCartPole-v0", "+env.kwargs.nan_after=100")
    summary = folder / "summary.json"
    results.append(("NaN reward from the env: named, summary recorded",
                    clean(out, codes=(1,)) or ("" if summary.exists() and "environment returned"
                                               in out.stderr else "not recorded or not named")))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/reliability.md")
    args = parser.parse_args()
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        good = tmp / "good"
        out = run("train", f"hydra.run.dir={good}", *TINY)
        assert out.returncode == 0, out.stderr
        sections = {
            "bad `pgrun train` inputs (exit 2, one message, no run folder)": bad_train(tmp),
            "bad `pgrun eval` inputs (exit 2, one message)": bad_eval(tmp, good),
            "bad `pgrun compare` inputs (exit 1 or 2, one message)": bad_compare(tmp),
            "malicious run folders (refused, no code runs)": hostile_folders(tmp, good),
            "faults survived": faults(tmp),
        }
    lines = ["| what | tried | handled cleanly |", "|---|--:|--:|"]
    for name, results in sections.items():
        lines.append(f"| {name} | {len(results)} | {sum(not p for _, p in results)} |")
    failures = [f"- {name}: `{case}`: {problem}" for name, results in sections.items()
                for case, problem in results if problem]
    text = "\n".join(lines) + "\n\n" + ("\n".join(["Not handled cleanly:", *failures])
                                        if failures else "All handled cleanly.")
    text += f"\n\n({time.strftime('%Y-%m-%d')}, {time.monotonic() - start:.0f} s)\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
