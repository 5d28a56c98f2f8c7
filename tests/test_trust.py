"""A run folder is data: ``pgrun eval`` never imports or calls code its saved config names
(an env entry point, a ``module:Env-v0`` id) unless the user passes ``--trust``."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from pgrun.checkpoint import FORMAT
from pgrun.trust import code_references
from tests.conftest import compose_config


def crafted_run(folder, **env):
    """A run folder whose checkpoint is well-formed (weights-only) but whose config names
    ``env`` settings of the attacker's choosing."""
    config = OmegaConf.to_container(compose_config("env=generic", "env.id=CartPole-v1"),
                                    resolve=True)
    config["env"].update(env)
    folder.mkdir()
    torch.save({"format": FORMAT, "complete": True, "step": 0, "update": 0, "agent": {},
                "config": config}, folder / "checkpoint.pt")
    return folder


HOSTILE = {
    "os.system through an entry point": {"entry_point": "os:system",
                                         "kwargs": {"command": "touch {marker}"}},
    "a function through an entry point": {"entry_point": "tests.marker_module:make"},
    "a module import through a module:Env-v0 id": {"id": "tests.marker_module:Marker-v0"},
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_eval_never_runs_code_a_run_folder_names(cli, tmp_path, monkeypatch, name):
    marker = tmp_path / "marker"
    monkeypatch.setenv("PGRUN_TEST_MARKER", str(marker))
    env = {k: ({kk: vv.format(marker=marker) for kk, vv in v.items()} if isinstance(v, dict)
               else v) for k, v in HOSTILE[name].items()}
    run = crafted_run(tmp_path / "run", **env)
    out = cli("eval", str(run))
    assert out.returncode == 2, out.stderr
    assert "names code" in out.stderr and f"pgrun eval {run} --trust" in out.stderr
    assert "Traceback" not in out.stderr
    assert not marker.exists()


def test_trust_on_the_command_line_lets_it_import(cli, tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    monkeypatch.setenv("PGRUN_TEST_MARKER", str(marker))
    run = crafted_run(tmp_path / "run", id="tests.marker_module:Marker-v0")
    out = cli("eval", str(run), "--trust")
    assert out.returncode == 2 and "did not register 'Marker-v0'" in out.stderr
    assert marker.exists()  # the user said so: the module was imported


def test_code_references_finds_every_kind():
    config = {"env": {"id": "CartPole-v1", "entry_point": None, "kwargs": {"a": "${oc.env:HOME}"}},
              "policy": {"net": {"_target_": "x.y"}}, "hooks": [{"module": "m"}]}
    assert code_references(config) == [
        "env.kwargs.a='${oc.env:HOME}' (an interpolation)", "policy.net._target_='x.y'",
        "hooks.0.module='m'"]
    assert code_references({"env": {"id": "pgrun/GridWorld-v0", "kwargs": {}}}) == []
