"""What every update shares (pgrun/algos/base.py, pgrun/flat.py): the flat parameter
buffers, Adam over them, ``step``'s gradient clipping, advantage normalization,
minibatches."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pgrun.algos.base import Adam, adam, minibatches, normalize, step
from pgrun.flat import flat_parameters
from tests.helpers import make_policy


def _policy(seed=0, **kwargs):
    return make_policy(5, 3, [16, 16], seed=seed, **kwargs)


def test_flat_parameters_are_views_ordered_policy_then_value():
    policy = _policy()
    state = copy.deepcopy(policy.state_dict())
    flat = flat_parameters(policy)
    assert flat_parameters(policy) is flat  # made once
    # the values survive the move into the buffer
    for key, value in policy.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    n_pi = sum(p.numel() for p in policy.policy_parameters())
    n_v = sum(p.numel() for p in policy.value_parameters())
    assert flat.data.numel() == n_pi + n_v == sum(p.numel() for p in policy.parameters())
    assert flat.parameter("policy").numel() == n_pi and flat.parameter("value").numel() == n_v
    # a write into the buffer is a write into the module's parameter, and its .grad is the
    # matching slice of the gradient buffer
    first = policy.policy_parameters()[0]
    flat.data[0] = 42.0
    assert float(first.detach().reshape(-1)[0]) == 42.0
    last = policy.value_parameters()[-1]
    flat.grad.zero_()
    last.grad.fill_(3.0)
    assert float(flat.grad[-1]) == 3.0 and float(flat.grad[:n_pi].abs().sum()) == 0.0
    with pytest.raises(ValueError, match="no value parameters"):
        flat_parameters(_policy(with_value=False)).parameter("value")


def test_adam_over_the_flat_buffer_equals_torch_adam_over_the_parameters():
    """A few full steps (loss → ``step`` → Adam on one flat tensor) land where
    ``torch.optim.Adam`` over the module's own parameters lands."""
    ours, ref = _policy(), _policy()
    opt = adam(ours, "all", lr=0.01, eps=1e-5)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=0.01, eps=1e-5)
    obs = torch.randn(32, 5)
    actions = torch.randint(0, 3, (32,))
    for _ in range(5):
        for policy in (ours, ref):
            dist, value = policy(obs)
            loss = -dist.log_prob(actions).mean() + value.pow(2).mean()
            if policy is ours:
                step(opt, loss, None)
            else:
                ref_opt.zero_grad()
                loss.backward()
                ref_opt.step()
    for (name, p), q in zip(ours.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    # and it did move them
    assert not torch.allclose(ours.policy_parameters()[0], _policy().policy_parameters()[0])


@pytest.mark.parametrize("fused", [True, False])
def test_our_adam_steps_bit_for_bit_like_torch_adam(fused):
    """``base.Adam`` (torch's step without torch._dynamo's import) gives exactly torch's
    parameters and state, with two parameter groups at different learning rates, and its
    state_dict loads into torch's Adam."""
    torch.manual_seed(0)
    start = [torch.randn(7), torch.randn(3, 4)]
    ours_p = [p.clone().requires_grad_() for p in start]
    ref_p = [p.clone().requires_grad_() for p in start]
    groups = lambda ps: [{"params": [ps[0]], "lr": 0.1}, {"params": [ps[1]], "lr": 0.01}]  # noqa: E731
    ours = Adam(groups(ours_p), eps=1e-5, fused=fused)
    ref = torch.optim.Adam(groups(ref_p), eps=1e-5, fused=fused)
    for i in range(4):
        grads = [torch.randn_like(p) for p in start]
        for params, opt in ((ours_p, ours), (ref_p, ref)):
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            opt.step()
        assert all(torch.equal(a, b) for a, b in zip(ours_p, ref_p, strict=True)), i
    state = ours.state_dict()
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(state["state"][1][key], ref.state_dict()["state"][1][key])
    ref.load_state_dict(state)


@pytest.mark.parametrize("fused", [True, False])
def test_adam_steps_groups_of_equal_settings_together_bit_for_bit(fused, monkeypatch):
    """Seeds' groups at one learning rate step in one call of Adam's kernel (a seed at
    another rate in a call of its own), with exactly the bits of torch's Adam stepping
    each group alone — also when a seed sits a step out (no gradient: it keeps its
    parameters and its step count)."""
    torch.manual_seed(0)
    start = [torch.randn(5) for _ in range(3)]
    ours_p = [p.clone().requires_grad_() for p in start]
    ref_p = [p.clone().requires_grad_() for p in start]
    groups = lambda ps: [{"params": [p], "lr": lr}  # noqa: E731
                         for p, lr in zip(ps, (0.1, 0.01, 0.1), strict=True)]
    ours = Adam(groups(ours_p), eps=1e-5, fused=fused)
    ref = torch.optim.Adam(groups(ref_p), eps=1e-5, fused=fused)
    kernel = "_fused_adam" if fused else "_single_tensor_adam"
    calls = []
    module = sys.modules["torch.optim.adam"]
    real = getattr(module, kernel)
    monkeypatch.setattr(module, kernel, lambda params, *a, **k: (
        calls.append(len(params)), real(params, *a, **k))[1])
    for i in range(4):
        grads = [torch.randn_like(p) for p in start]
        for params, opt in ((ours_p, ours), (ref_p, ref)):
            for k, (p, g) in enumerate(zip(params, grads, strict=True)):
                p.grad = None if (i == 2 and k == 1) else g.clone()
            opt.step()
        assert all(torch.equal(a, b) for a, b in zip(ours_p, ref_p, strict=True)), i
    # per step: ours one call over seeds 0 and 2 and one for seed 1, torch's a call per group
    assert calls == [2, 1, 1, 1, 1] * 2 + [2, 0, 1, 0, 1] + [2, 1, 1, 1, 1]
    assert ours.state_dict()["state"][1]["step"] == 3 == ref.state_dict()["state"][1]["step"]


def test_a_training_run_does_not_import_torch_dynamo(tmp_path):
    """torch._dynamo costs ≈1 s of every process's start-up; ``pgrun train`` never needs it
    (training, evaluations, checkpoints)."""
    code = ("import runpy, sys\n"
            "sys.argv = ['pgrun', 'train', 'total_steps=512', 'eval.interval=256',\n"
            f"            'checkpoint.every=1', 'progress=none', 'hydra.run.dir={tmp_path}']\n"
            "try:\n    runpy.run_module('pgrun', run_name='__main__')\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "summary.json").is_file() and (tmp_path / "checkpoint.pt").is_file()
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_role_optimizers_leave_the_other_role_alone():
    policy = _policy()
    opt = adam(policy, "value", lr=0.1)
    before = [p.detach().clone() for p in policy.policy_parameters()]
    dist, value = policy(torch.randn(8, 5))
    step(opt, value.pow(2).mean() - dist.entropy().mean(), None)
    for p, q in zip(policy.policy_parameters(), before, strict=True):
        assert torch.equal(p.detach(), q)


@pytest.mark.parametrize("max_norm", [0.5, 1e3], ids=["clips", "below_max"])
def test_step_clips_like_torch_clip_grad_norm(max_norm):
    ours, ref = _policy(), _policy()
    opt = adam(ours, "all", lr=1e-2)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    obs = torch.randn(16, 5)

    def loss_of(policy):
        dist, value = policy(obs)
        return -10.0 * dist.entropy().mean() + 5.0 * (value - 3.0).pow(2).mean()

    norm = step(opt, loss_of(ours), max_norm)
    ref_opt.zero_grad()
    loss_of(ref).backward()
    ref_norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), max_norm)
    ref_opt.step()
    assert norm == pytest.approx(float(ref_norm), rel=1e-5)
    grad = flat_parameters(ours).grad
    ref_grad = torch.cat([p.grad.reshape(-1) for p in ref.parameters()])
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-7)
    if max_norm < norm:  # clipped in place to the max norm (less the 1e-6)
        assert float(grad.norm()) == pytest.approx(max_norm, rel=1e-5)
    else:
        assert float(grad.norm()) == pytest.approx(norm, rel=1e-6)
    for p, q in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)


def test_step_zeroes_stale_gradients_and_does_not_clip_without_max_norm():
    policy = make_policy(2, 2, [], seed=0)
    opt = adam(policy, "all", lr=0.1)
    flat = flat_parameters(policy)
    flat.grad.fill_(1e6)  # stale: must not leak into this step
    before = flat.data.clone()
    bias = policy.v_out.bias
    norm = step(opt, 100.0 * bias.sum(), None)
    assert np.isnan(norm)
    assert float(bias.grad) == 100.0  # unclipped
    assert float(flat.grad.abs().sum()) == 100.0  # every other gradient zeroed
    # Adam's first step is −lr·sign(g) on the parameters with a gradient, 0 elsewhere
    moved = flat.data - before
    assert float(bias.detach() - before[-1]) == pytest.approx(-0.1, rel=1e-4)
    assert int((moved != 0).sum()) == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normalize_uses_the_sample_std(dtype):
    x = torch.from_numpy(np.random.default_rng(8).normal(size=37) * 4.0 + 3.0).to(dtype)
    before = x.clone()
    got = normalize(x)
    want = (x.double() - x.double().mean()) / (x.double().std(correction=1) + 1e-8)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 0}
    torch.testing.assert_close(got.double(), want, **tol)
    # not the population std (which would be a factor √(n/(n−1)) ≈ 1.014 off)
    pop = (x.double() - x.double().mean()) / x.double().std(correction=0)
    assert not torch.allclose(got.double(), pop, rtol=1e-3)
    assert torch.equal(x, before)  # the input is left alone
    assert got.dtype == dtype
    # and the eps: a constant vector stays finite (all zeros)
    assert torch.equal(normalize(torch.full((4,), 2.5, dtype=dtype)), torch.zeros(4, dtype=dtype))


def test_normalize_leaves_fewer_than_two_samples_alone():
    assert torch.equal(normalize(torch.tensor([3.0])), torch.tensor([3.0]))
    assert normalize(torch.zeros(0)).numel() == 0


def test_minibatches_cover_every_sample_once_per_epoch():
    torch.manual_seed(0)
    parts = list(minibatches(10, num_epochs=3, num_minibatches=4))
    assert len(parts) == 12 and sorted(len(p) for p in parts[:4]) == [2, 2, 3, 3]
    for epoch in range(3):
        assert sorted(torch.cat(parts[4 * epoch:4 * epoch + 4]).tolist()) == list(range(10))
    assert not torch.equal(torch.cat(parts[:4]), torch.cat(parts[4:8]))  # reshuffled
    # fewer samples than minibatches: the empty parts are skipped
    assert [len(p) for p in minibatches(2, 1, 4)] == [1, 1]
