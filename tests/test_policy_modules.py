"""Policies as nn.Modules: the CNN body on images, a user's module by import path, and the
errors for modules that do not fit the interface or a device that is not there."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgrun.accelerate import attach
from pgrun.policies import ActorCritic, NatureCNN, build_policy, resolve_kind
from tests.conftest import compose_config
from tests.image_env import LeftRight

IMAGE_RUN = ["algo=ppo", "env=generic", "env.entry_point=tests.image_env:LeftRight",
             "env.num_envs=8", "algo.num_steps=16", "algo.num_minibatches=2", "algo.num_epochs=4",
             "algo.lr=1e-3", "eval.interval=1024", "eval.episodes=8", "progress=none"]


def test_images_get_the_cnn_body_scaled_inside():
    env = LeftRight()
    assert resolve_kind("auto", env.observation_space) == "cnn"
    policy = ActorCritic(env.observation_space, env.action_space, kind="cnn")
    assert isinstance(policy.pi_body, NatureCNN) and policy.pi_body.channels_last
    obs = torch.from_numpy(np.stack([env.reset(seed=s)[0] for s in range(3)]))
    assert obs.dtype == torch.uint8
    dist, value = policy(obs)
    assert dist.log_p.shape == (3, 2) and value.shape == (3,)
    # the module scales x / 255: the same image as float 0..1 by hand gives the same features
    body = policy.pi_body
    by_hand = body.dense(body.convs(obs.float().div(255).permute(0, 3, 1, 2)))
    torch.testing.assert_close(body(obs), by_hand)
    assert attach(policy) == "autograd"  # the accelerator claims plain MLP/tabular bodies only


def test_channels_first_images_too():
    space = gym.spaces.Box(0, 255, (4, 40, 40), np.uint8)
    policy = ActorCritic(space, gym.spaces.Discrete(3), kind="cnn")
    assert not policy.pi_body.channels_last
    dist, _ = policy(torch.zeros(2, 4, 40, 40, dtype=torch.uint8))
    assert dist.mode().shape == (2,)


@pytest.mark.parametrize("shape", [(4, 40, 40), (40, 40, 3)], ids=["chw", "hwc"])
def test_the_convolutions_get_channels_last_images_and_compute_the_same(shape):
    """Every convolution's input is laid out channels-last (oneDNN's fast kernels; the
    layout ``NatureCNN.forward`` and ``StackedConv2d`` make), and the features are those
    of the plain C×H×W computation; likewise for K seeds' stacked bodies."""
    from pgrun.stack import SeedStack

    torch.manual_seed(0)
    space = gym.spaces.Box(0, 255, shape, np.uint8)
    policies = [ActorCritic(space, gym.spaces.Discrete(3), kind="cnn") for _ in range(2)]
    obs = torch.randint(0, 256, (2, 5, *shape), dtype=torch.uint8)
    layouts = []
    hook = lambda _m, args: layouts.append(  # noqa: E731
        args[0].is_contiguous(memory_format=torch.channels_last))
    for m in [m for p in policies for m in p.modules() if isinstance(m, torch.nn.Conv2d)]:
        m.register_forward_pre_hook(hook)
    for k, policy in enumerate(policies):
        body = policy.pi_body
        chw = obs[k].float().div(255)
        chw = chw.permute(0, 3, 1, 2).contiguous() if body.channels_last else chw
        plain = torch.nn.functional.relu
        x = chw
        for conv in body.convs[0:6:2]:
            x = plain(torch.nn.functional.conv2d(x, conv.weight, conv.bias, conv.stride))
        torch.testing.assert_close(body(obs[k]), body.dense(x.flatten(1)), rtol=1e-5, atol=1e-5)
    assert layouts and all(layouts)
    alone = [p(obs[k]) for k, p in enumerate(policies)]
    stack = SeedStack(policies)
    layouts.clear()
    convs = [m for m in stack.modules() if type(m).__name__ == "StackedConv2d"]
    for m in convs:  # after the first, a layer's input is already (B, H, W, K, C) in memory
        m.register_forward_pre_hook(lambda _m, args: layouts.append(
            args[0].permute(1, 3, 4, 0, 2).is_contiguous()))
    dist, value = stack(obs)
    torch.testing.assert_close(dist.log_p, torch.stack([d.log_p for d, _ in alone]),
                               rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(value, torch.stack([v for _, v in alone]), rtol=1e-4, atol=1e-5)
    assert len(layouts) == len(convs) == 6  # the policy's and the value's bodies
    assert all(layouts[1::3]) and all(layouts[2::3])


def test_a_bfloat16_body_computes_in_bfloat16_and_hands_float32_on():
    """policy.cnn_precision=bfloat16: the layers' outputs are bfloat16 (so their products
    ran in it), the features, parameters and gradients float32 and within bfloat16's
    rounding of the float32 body's; so are K seeds' stacked bodies."""
    from pgrun.stack import SeedStack

    torch.manual_seed(0)
    space = gym.spaces.Box(0, 255, (40, 40, 4), np.uint8)
    exact = ActorCritic(space, gym.spaces.Discrete(3), kind="cnn")
    fast = ActorCritic(space, gym.spaces.Discrete(3), kind="cnn", cnn_precision="bfloat16")
    fast.load_state_dict(exact.state_dict())
    dtypes = []
    for m in fast.pi_body.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            m.register_forward_hook(lambda _m, _a, out: dtypes.append(out.dtype))
    obs = torch.randint(0, 256, (32, 40, 40, 4), dtype=torch.uint8)
    f32, b16 = exact.pi_body(obs), fast.pi_body(obs)
    assert dtypes == [torch.bfloat16] * 4 and b16.dtype == torch.float32
    rel = ((b16 - f32).norm() / f32.norm()).item()
    assert 1e-4 < rel < 0.02  # not float32's numbers, but within bfloat16's 8-bit mantissa
    grads = []
    for policy in (exact, fast):
        dist, value = policy(obs)
        (-dist.log_prob(torch.zeros(32, dtype=torch.long)).mean() + value.square().mean()).backward()
        assert all(p.grad.dtype == torch.float32 for p in policy.parameters())
        grads.append(torch.cat([p.grad.flatten() for p in policy.parameters()]))
    assert ((grads[1] - grads[0]).norm() / grads[0].norm()).item() < 0.03
    twin = ActorCritic(space, gym.spaces.Discrete(3), kind="cnn", cnn_precision="bfloat16")
    stack, pair = SeedStack([fast, twin]), torch.stack([obs[:8], obs[8:16]])
    dist, _ = stack(pair)
    torch.testing.assert_close(dist.log_p, torch.stack([fast(obs[:8])[0].log_p,
                                                        twin(obs[8:16])[0].log_p]),
                               rtol=0.02, atol=0.02)


def test_bfloat16_is_for_the_cnn_body_and_learns_the_image_env(cli, tmp_path):
    out = cli("train", *IMAGE_RUN, "policy.cnn_precision=bfloat16", "total_steps=1024",
              f"hydra.run.dir={tmp_path / 'run'}")
    assert out.returncode == 0, out.stderr
    evals = (tmp_path / "run" / "eval.csv").read_text().splitlines()[1:]
    assert float(evals[-1].split(",")[1]) == 4.0  # every image answered right, as float32
    for bad, message in [("policy.cnn_precision=float16", "must be one of float32, bfloat16"),
                         ("policy.cnn_precision=bfloat16", "this policy has none (policy.kind=mlp)")]:
        refused = cli("train", bad, "total_steps=64", f"hydra.run.dir={tmp_path / 'no'}")
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr and not (tmp_path / "no").exists()
    mine = cli("train", "policy.module=tests.user_nets:TinyNet", "policy.cnn_precision=bfloat16",
               "total_steps=64", f"hydra.run.dir={tmp_path / 'no'}")
    assert mine.returncode == 2 and "torch.autocast inside it" in mine.stderr, mine.stderr


def test_mlp_on_images_flattens_them_when_asked():
    cfg = compose_config("policy.kind=mlp")
    env = LeftRight()
    policy = build_policy(cfg.policy, env.observation_space, env.action_space, with_value=True)
    dist, value = policy(torch.zeros(2, 36, 36, 1, dtype=torch.uint8))
    assert policy.pi_body[1][0].in_features == 36 * 36 and value.shape == (2,)


def test_cnn_policy_learns_the_image_env(cli, tmp_path):
    out = cli("train", *IMAGE_RUN, "total_steps=1024", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    evals = (tmp_path / "eval.csv").read_text().splitlines()[1:]
    first, last = float(evals[0].split(",")[1]), float(evals[-1].split(",")[1])
    assert first < 3.5 and last == 4.0  # chance is 2 of 4; every image answered right
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["update_path"] == "autograd"


def test_a_user_module_trains(cli, tmp_path):
    out = cli("train", "algo=ppo", "policy.module=tests.user_nets:TinyNet", "policy.kwargs.width=16",
              "total_steps=2048", "algo.num_steps=64", "eval.interval=1024", "eval.episodes=2",
              "progress=none", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["update_path"] == "autograd"
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["agent"]
    assert state["body.0.weight"].shape == (16, 4)  # its kwargs reached the constructor
    assert any(k.startswith("body.1.") for k in state)  # and its LayerNorm trained with it
    # the run folder names code: evaluating it imports that only when the user says so
    refused = cli("eval", str(tmp_path), "episodes=2")
    assert refused.returncode == 2 and "policy.module" in refused.stderr
    assert "--trust" in refused.stderr and "Traceback" not in refused.stderr
    trusted = cli("eval", str(tmp_path), "episodes=2", "--trust")
    assert trusted.returncode == 0, trusted.stderr


@pytest.mark.parametrize("module, message", [
    ("tests.user_nets:LogitsOnly", "must return (dist, value)"),
    ("tests.user_nets:not_a_module", "not a torch.nn.Module"),
    ("tests.user_nets:Missing", "has no attribute 'Missing'"),
    ("no_such_pkg.nets:Net", "no module named 'no_such_pkg'"),
])
def test_a_module_that_does_not_fit_is_a_clean_error(cli, tmp_path, module, message):
    out = cli("train", f"policy.module={module}", "total_steps=64", "progress=none",
              f"hydra.run.dir={tmp_path}")
    assert out.returncode != 0
    assert message in out.stderr and "policy.module" in out.stderr
    assert "Traceback" not in out.stderr


def test_cuda_without_a_gpu_is_a_clean_error(cli, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = cli("train", "device=cuda", "total_steps=64", "progress=none",
              f"hydra.run.dir={tmp_path}")
    assert out.returncode != 0 and "device=cuda" in out.stderr and "Traceback" not in out.stderr
