"""The update's hand-written backward pass and optimizer against torch.

* ``NumpyAgent.evaluate`` + ``backward`` give what torch autograd gives through the
  reference ``Agent.evaluate`` for arbitrary upstream gradients ∂L/∂log π, ∂L/∂H, ∂L/∂V,
  over every body, head and activation an Agent can have;
* ``pgrun.optim.Adam`` steps as ``torch.optim.Adam``; ``base.step`` clips as
  ``torch.nn.utils.clip_grad_norm_``; ``base.normalize`` standardizes with the sample std;
* a backward with a wrong sign or a missing factor, written out here by hand, is
  rejected by the same tolerance, so the comparisons have teeth.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from pgrun.algos.base import normalize, step
from pgrun.distributions import LOG_STD_MAX, ActionBounds
from pgrun.numpy_agent import NumpyAgent
from pgrun.optim import Adam
from pgrun.policies import Agent

REL_TOL = 1e-5  # of the largest reference gradient component
SENTINEL = 7.0  # what the gradient buffer holds before a backward that must overwrite it


# ----------------------------------------------------------------------------- helpers

def flat_order(agent: Agent) -> list[torch.nn.Parameter]:
    """The parameters in the order of the flat buffers: the policy's, then the value's."""
    return [*agent.policy_parameters(), *agent.value_parameters()]


def reference_grad(agent: Agent, outputs, grad_outputs) -> np.ndarray:
    """Σ_k ⟨grad_outputs_k, ∂outputs_k/∂θ⟩ by torch autograd, laid out as ``flat_grad``
    (float64; parameters the outputs do not reach get 0)."""
    params = flat_order(agent)
    grads = torch.autograd.grad(outputs, params, grad_outputs, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                      for p, g in zip(params, grads, strict=True)]).double().numpy()


def role_slice(agent: Agent, role: str) -> slice:
    n_policy = agent.flat_parameter("policy").numel()
    return slice(0, n_policy) if role == "policy" else slice(n_policy, agent.flat_grad.numel())


def max_rel_err(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-12))


def categorical_agent(activation="tanh", hidden=(16, 16), shared=False, with_value=True):
    torch.manual_seed(0)
    agent = Agent(5, 3, list(hidden), activation, with_value=with_value, shared=shared)
    with torch.no_grad():
        agent.pi_head.weight.mul_(5.0)  # far from uniform: the entropy gradient is not ~0
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(32, 5)).astype(np.float32)
    return agent, obs, rng.integers(0, 3, 32)


def gaussian_agent(bounds="clip", state_dependent=False, hidden=(16, 16)):
    torch.manual_seed(0)
    agent = Agent(5, 2, list(hidden), "tanh",
                  action_bounds=ActionBounds(np.array([-2.0, 0.0]), np.array([2.0, 1.0]), bounds),
                  log_std_init=-0.5, state_dependent_std=state_dependent)
    rng = np.random.default_rng(2)
    obs = rng.normal(size=(32, 5)).astype(np.float32)
    if state_dependent:
        with torch.no_grad():  # the raw log σ of dimension 0: LOG_STD_MAX ± about 1
            raw = agent.pi_head(agent.pi_body(torch.from_numpy(obs)))[:, 2] - agent.pi_head.bias[2]
            agent.pi_head.weight[2].div_(raw.std())
            agent.pi_head.bias[2] = LOG_STD_MAX
    return agent, obs, rng.normal(size=(32, 2)).astype(np.float32)


def tabular_agent():
    torch.manual_seed(0)
    agent = Agent(6, 3, [], kind="tabular", discrete_obs=True, obs_start=2)
    with torch.no_grad():
        for p in agent.parameters():
            p.normal_()
    rng = np.random.default_rng(3)
    return agent, rng.integers(2, 8, 40), rng.integers(0, 3, 40)


def one_hot_mlp_agent():
    torch.manual_seed(0)
    agent = Agent(6, 3, [8], discrete_obs=True, obs_start=1)
    rng = np.random.default_rng(4)
    return agent, rng.integers(1, 7, 40), rng.integers(0, 3, 40)


CASES = {
    **{f"cat-{act}-{'x'.join(map(str, hidden)) or 'linear'}{'-shared' if shared else ''}":
       (lambda act=act, hidden=hidden, shared=shared: categorical_agent(act, hidden, shared))
       for act in ("tanh", "relu", "elu", "gelu")
       for hidden, shared in (((16, 16), False), ((16,), True), ((), False))},
    **{f"gauss-{bounds}{'-state_std' if sd else ''}":
       (lambda bounds=bounds, sd=sd: gaussian_agent(bounds, sd))
       for bounds in ("clip", "tanh") for sd in (False, True)},
    "gauss-linear-state_std": lambda: gaussian_agent("clip", True, ()),
    "tabular-start2": tabular_agent,
    "one_hot_mlp-start1": one_hot_mlp_agent,
    "no_value": lambda: categorical_agent(hidden=(16,), with_value=False),
}


def upstream(n: int, scalar_entropy: bool):
    rng = np.random.default_rng(5)
    dlogp, dent, dvalue = rng.normal(size=(3, n)).astype(np.float32)
    return dlogp, (np.float32(-0.37) if scalar_entropy else dent), dvalue


# ------------------------------------------------- NumpyAgent.backward against autograd

@pytest.mark.parametrize("scalar_entropy", [False, True], ids=["dH_array", "dH_scalar"])
@pytest.mark.parametrize("case", list(CASES))
def test_backward_matches_autograd(case, scalar_entropy):
    agent, obs, actions = CASES[case]()
    n = len(obs)
    dlogp, dent, dvalue = upstream(n, scalar_entropy)
    net = NumpyAgent(agent)
    logp, entropy, value = net.evaluate(obs, actions)
    agent.flat_grad.fill_(SENTINEL)  # backward sets every gradient it touches
    net.backward(dlogp, dent, dvalue if agent.with_value else None)
    got = agent.flat_grad.double().numpy().copy()

    t_logp, t_ent, t_value = agent.evaluate(torch.from_numpy(obs), torch.from_numpy(actions))
    np.testing.assert_allclose(logp, t_logp.detach().numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(entropy, t_ent.detach().numpy(), atol=1e-5, rtol=1e-5)
    outputs = [t_logp, t_ent]
    grads = [torch.from_numpy(dlogp), torch.from_numpy(np.broadcast_to(dent, (n,)).copy())]
    if agent.with_value:
        np.testing.assert_allclose(value, t_value.detach().numpy(), atol=1e-5, rtol=1e-5)
        outputs.append(t_value)
        grads.append(torch.from_numpy(dvalue))
    else:
        assert value is None
    want = reference_grad(agent, outputs, grads)
    assert np.max(np.abs(want)) > 0.1  # a non-trivial comparison
    assert max_rel_err(got, want) < REL_TOL
    # every role's gradient reaches its optimizer's view of the buffer
    np.testing.assert_array_equal(agent.flat_parameter("all").grad.numpy(), got.astype(np.float32))
    for p, g in zip(flat_order(agent), torch.from_numpy(got).split(
            [p.numel() for p in flat_order(agent)]), strict=True):
        np.testing.assert_array_equal(p.grad.reshape(-1).numpy(), g.float().numpy())


def test_state_dependent_std_case_has_the_clamp_binding_on_some_samples():
    agent, obs, _ = gaussian_agent("clip", True)
    with torch.no_grad():
        raw = agent.pi_head(agent.pi_body(torch.from_numpy(obs)))[:, 2]
    above = raw > LOG_STD_MAX
    assert 5 <= int(above.sum()) <= len(obs) - 5  # both sides of the clamp are exercised


@pytest.mark.parametrize("case", ["cat-tanh-16x16", "cat-relu-16-shared", "gauss-tanh",
                                  "gauss-clip-state_std", "tabular-start2"])
def test_backward_without_dvalue_leaves_value_gradients_alone(case):
    agent, obs, actions = CASES[case]()
    dlogp, dent, _ = upstream(len(obs), scalar_entropy=False)
    net = NumpyAgent(agent)
    net.evaluate(obs, actions)
    agent.flat_grad.fill_(SENTINEL)
    net.backward(dlogp, dent, None)
    grad = agent.flat_grad.double().numpy()
    value_part = grad[role_slice(agent, "value")]
    assert value_part.size > 0
    np.testing.assert_array_equal(value_part, SENTINEL)
    # and the policy's is that of log π and H alone (a shared body gets no value term)
    t_logp, t_ent, _ = agent.evaluate(torch.from_numpy(obs), torch.from_numpy(actions))
    want = reference_grad(agent, [t_logp, t_ent], [torch.from_numpy(dlogp), torch.from_numpy(dent)])
    pol = role_slice(agent, "policy")
    assert max_rel_err(grad[pol], want[pol]) < REL_TOL
    # evaluate(with_value=False), as VPG's policy step calls it, gives the same
    net.evaluate(obs, actions, with_value=False)
    agent.flat_grad.fill_(SENTINEL)
    net.backward(dlogp, dent)
    np.testing.assert_array_equal(agent.flat_grad.double().numpy(), grad)


@pytest.mark.parametrize("case", ["cat-elu-16x16", "cat-gelu-16-shared", "gauss-tanh-state_std",
                                  "tabular-start2", "one_hot_mlp-start1"])
def test_value_backward_matches_autograd_of_the_value(case):
    agent, obs, _ = CASES[case]()
    dvalue = np.random.default_rng(6).normal(size=len(obs)).astype(np.float32)
    net = NumpyAgent(agent)
    value = net.value(obs)
    agent.flat_grad.fill_(SENTINEL)
    net.value_backward(dvalue)
    t_value = agent.value(torch.from_numpy(obs))
    np.testing.assert_allclose(value, t_value.detach().numpy(), atol=1e-5, rtol=1e-5)
    want = reference_grad(agent, [t_value], [torch.from_numpy(dvalue)])
    got = agent.flat_grad.double().numpy()
    val = role_slice(agent, "value")
    assert np.max(np.abs(want[val])) > 0.1
    assert max_rel_err(got[val], want[val]) < REL_TOL
    if not agent.shared:  # the policy's parameters are not the value's business
        np.testing.assert_array_equal(got[role_slice(agent, "policy")], SENTINEL)


def test_repeated_backward_sets_rather_than_accumulates():
    agent, obs, actions = CASES["cat-tanh-16-shared"]()
    dlogp, dent, dvalue = upstream(len(obs), scalar_entropy=False)
    net = NumpyAgent(agent)
    net.evaluate(obs, actions)
    net.backward(dlogp, dent, dvalue)
    first = agent.flat_grad.clone()
    net.backward(dlogp, dent, dvalue)
    torch.testing.assert_close(agent.flat_grad, first, rtol=0, atol=0)


# ---------------------------------------- the comparison rejects a wrong backward pass

def linear_head_grad(x: np.ndarray, dz: np.ndarray) -> np.ndarray:
    """(∂L/∂W, ∂L/∂b) of z = x Wᵀ + b, flattened as the buffer lays them out."""
    return np.concatenate([(dz.T @ x).reshape(-1), dz.sum(0)])


def test_wrong_categorical_entropy_sign_is_rejected():
    """∂H/∂z = −p ⊙ (log p + H), written out here: the right sign matches autograd and
    NumpyAgent; the flipped one is off by far more than the tolerance."""
    agent, obs, actions = categorical_agent(hidden=(), with_value=False)
    dlogp, dent, _ = upstream(len(obs), scalar_entropy=False)
    t_logp, t_ent, _ = agent.evaluate(torch.from_numpy(obs), torch.from_numpy(actions))
    want = reference_grad(agent, [t_logp, t_ent], [torch.from_numpy(dlogp), torch.from_numpy(dent)])

    with torch.no_grad():
        z = agent.pi_head(torch.from_numpy(obs)).double().numpy()
    log_p = z - np.logaddexp.reduce(z, axis=1, keepdims=True)
    p, entropy = np.exp(log_p), -(np.exp(log_p) * log_p).sum(1, keepdims=True)
    dlogp_dz = np.eye(3)[actions] - p
    dent_dz = -p * (log_p + entropy)
    x = obs.astype(np.float64)
    right = linear_head_grad(x, dlogp[:, None] * dlogp_dz + dent[:, None] * dent_dz)
    flipped = linear_head_grad(x, dlogp[:, None] * dlogp_dz - dent[:, None] * dent_dz)
    assert max_rel_err(right, want) < REL_TOL
    assert max_rel_err(flipped, want) > 100 * REL_TOL

    net = NumpyAgent(agent)
    net.evaluate(obs, actions)
    net.backward(dlogp, dent)
    assert max_rel_err(agent.flat_grad.double().numpy(), want) < REL_TOL


def test_missing_tanh_derivative_is_rejected():
    """One tanh hidden layer, backpropagated by hand: with the (1 − y²) factor it matches
    autograd; without it (treating tanh as the identity) it is far off."""
    agent, obs, actions = categorical_agent(hidden=(16,), with_value=False)
    dlogp, dent, _ = upstream(len(obs), scalar_entropy=True)
    t_logp, t_ent, _ = agent.evaluate(torch.from_numpy(obs), torch.from_numpy(actions))
    want = reference_grad(agent, [t_logp, t_ent],
                          [torch.from_numpy(dlogp), torch.full((len(obs),), float(dent))])

    dense, head = agent.pi_body[0][0], agent.pi_head
    w1, b1 = dense.weight.detach().double().numpy(), dense.bias.detach().double().numpy()
    w2 = head.weight.detach().double().numpy()
    x = obs.astype(np.float64)
    y = np.tanh(x @ w1.T + b1)
    z = y @ w2.T + head.bias.detach().double().numpy()
    log_p = z - np.logaddexp.reduce(z, axis=1, keepdims=True)
    p = np.exp(log_p)
    entropy = -(p * log_p).sum(1, keepdims=True)
    dz = dlogp[:, None] * (np.eye(3)[actions] - p) + float(dent) * (-p * (log_p + entropy))
    dy = dz @ w2
    head_part = linear_head_grad(y, dz)

    def with_body(dpre):
        return np.concatenate([linear_head_grad(x, dpre), head_part])

    right, no_factor = with_body(dy * (1.0 - y * y)), with_body(dy)
    assert max_rel_err(right, want) < REL_TOL
    assert max_rel_err(no_factor, want) > 100 * REL_TOL


def test_ignoring_the_log_std_clamp_is_rejected():
    """State-dependent log σ = clamp(raw, MIN, MAX): where the clamp binds the raw output
    gets no gradient. Passing it through anyway is far off."""
    agent, obs, actions = gaussian_agent("clip", True, hidden=())
    dlogp, dent, _ = upstream(len(obs), scalar_entropy=False)
    t_logp, t_ent, _ = agent.evaluate(torch.from_numpy(obs), torch.from_numpy(actions))
    want = reference_grad(agent, [t_logp, t_ent], [torch.from_numpy(dlogp), torch.from_numpy(dent)])
    want = want[role_slice(agent, "policy")]

    with torch.no_grad():
        z = agent.pi_head(torch.from_numpy(obs)).double().numpy()
    mean, raw = z[:, :2], z[:, 2:]
    log_std = np.clip(raw, -20.0, LOG_STD_MAX)
    zeta = (actions - mean) / np.exp(log_std)
    dmean = dlogp[:, None] * zeta / np.exp(log_std)
    dlog_std = dlogp[:, None] * (zeta**2 - 1.0) + dent[:, None]
    inside = (raw >= -20.0) & (raw <= LOG_STD_MAX)
    x = obs.astype(np.float64)
    right = linear_head_grad(x, np.concatenate([dmean, dlog_std * inside], axis=1))
    unclamped = linear_head_grad(x, np.concatenate([dmean, dlog_std], axis=1))
    assert max_rel_err(right, want) < REL_TOL
    assert max_rel_err(unclamped, want) > 100 * REL_TOL


# ------------------------------------------------------------------------------- Adam

def mixed_scale_grads(n: int, steps: int, seed: int) -> np.ndarray:
    """Gradients whose components span 1e-9 … 1e2 in scale (eps matters for the small
    ones), some exactly zero for stretches, sign and size changing every step."""
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-9, 2, size=n)
    grads = (rng.normal(size=(steps, n)) + 0.5) * scale  # with a drift: the parameters move
    grads[: steps // 2, :5] = 0.0  # untouched at first, then moving
    return grads.astype(np.float32)


def flat_param(values: np.ndarray) -> torch.nn.Parameter:
    p = torch.nn.Parameter(torch.from_numpy(values.copy()))
    p.grad = torch.zeros_like(p)
    return p


@pytest.mark.parametrize("eps", [1e-8, 1e-5])
def test_adam_matches_torch_adam(eps):
    n, steps = 64, 200
    init = np.random.default_rng(0).normal(size=n).astype(np.float32)
    grads = mixed_scale_grads(n, steps, seed=1)
    ours = flat_param(init)
    opt = Adam(ours, lr=3e-3, betas=(0.9, 0.999), eps=eps)
    ref = torch.nn.Parameter(torch.from_numpy(init.copy()))
    ref_opt = torch.optim.Adam([ref], lr=3e-3, betas=(0.9, 0.999), eps=eps)
    for t in range(steps):
        if t == steps // 2:  # a learning-rate change (annealing) takes effect at once
            opt.lr = 1e-3
            ref_opt.param_groups[0]["lr"] = 1e-3
        ours.grad.copy_(torch.from_numpy(grads[t]))  # in place: the optimizer's view
        ref.grad = torch.from_numpy(grads[t].copy())
        opt.step()
        ref_opt.step()
    assert opt.step_count == steps
    moved = np.abs(ref.detach().numpy() - init)
    assert moved.max() > 0.1  # the comparison is not of parameters that barely moved
    np.testing.assert_allclose(ours.detach().numpy(), ref.detach().numpy(), atol=1e-6, rtol=0)
    state = ref_opt.state[ref]
    np.testing.assert_allclose(opt.exp_avg, state["exp_avg"].numpy(), rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(opt.exp_avg_sq, state["exp_avg_sq"].numpy(), rtol=1e-5,
                               atol=1e-20)


def test_adam_eps_outside_the_bias_correction_matters():
    """Tiny gradients make ε's placement visible: the first step is lr·m̂/(√v̂ + ε), ε added
    after the bias correction of √v (torch's convention); adding it before the correction
    would move the 1e-9 components by ~0.003 instead of ~0.09 per unit lr."""
    g = np.array([1e-9, -3e-9, 1e-1], dtype=np.float64)
    lr, b1, b2, eps = 1.0, 0.9, 0.999, 1e-8
    m_hat, v_hat = (1 - b1) * g / (1 - b1), (1 - b2) * g * g / (1 - b2)
    right = lr * m_hat / (np.sqrt(v_hat) + eps)
    eps_before_correction = lr * m_hat / (np.sqrt((1 - b2) * g * g) / np.sqrt(1 - b2)
                                          + eps / np.sqrt(1 - b2))
    p = flat_param(np.zeros(3, dtype=np.float32))
    p.grad.copy_(torch.from_numpy(g.astype(np.float32)))
    Adam(p, lr=lr, betas=(b1, b2), eps=eps).step()
    np.testing.assert_allclose(-p.detach().numpy(), right, rtol=1e-5)
    assert np.max(np.abs(eps_before_correction - right)) > 1e-2


def test_adam_state_dict_round_trips():
    n = 32
    init = np.random.default_rng(2).normal(size=n).astype(np.float32)
    grads = mixed_scale_grads(n, 100, seed=3)
    a = flat_param(init)
    opt_a = Adam(a, lr=1e-2, betas=(0.8, 0.99), eps=1e-6)
    for g in grads[:50]:
        a.grad.copy_(torch.from_numpy(g))
        opt_a.step()
    state = opt_a.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)  # as checkpoints store it
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    b = flat_param(a.detach().numpy())
    opt_b = Adam(b, lr=0.5)  # every setting comes from the state
    opt_b.load_state_dict(loaded)
    assert (opt_b.lr, opt_b.betas, opt_b.eps, opt_b.step_count) == (1e-2, (0.8, 0.99), 1e-6, 50)
    for g in grads[50:]:
        a.grad.copy_(torch.from_numpy(g))
        b.grad.copy_(torch.from_numpy(g))
        opt_a.step()
        opt_b.step()
    np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    # the state is a copy: stepping on did not change what was saved
    assert state["step"] == 50 and not torch.equal(state["exp_avg"], torch.from_numpy(opt_a.exp_avg))


def test_adam_load_state_dict_rejects_another_size():
    opt = Adam(flat_param(np.zeros(10, dtype=np.float32)), lr=1e-3)
    other = Adam(flat_param(np.zeros(11, dtype=np.float32)), lr=1e-3)
    with pytest.raises(ValueError):
        opt.load_state_dict(other.state_dict())
    with pytest.raises(ValueError):
        opt.load_state_dict({"step": 3})
    assert opt.step_count == 0


# ------------------------------------------------------------------------ base.step

@pytest.mark.parametrize("max_norm", [0.5, 1e3], ids=["clips", "below_max"])
def test_step_clips_like_torch_clip_grad_norm(max_norm):
    rng = np.random.default_rng(7)
    init = rng.normal(size=50).astype(np.float32)
    grad = (rng.normal(size=50) * 3.0).astype(np.float32)
    ours = flat_param(init)
    ours.grad.copy_(torch.from_numpy(grad))
    opt = Adam(ours, lr=1e-2)
    norm = step(opt, max_norm)

    ref = torch.nn.Parameter(torch.from_numpy(init.copy()))
    ref.grad = torch.from_numpy(grad.copy())
    ref_norm = torch.nn.utils.clip_grad_norm_([ref], max_norm)
    ref_opt = torch.optim.Adam([ref], lr=1e-2)
    ref_opt.step()
    assert norm == pytest.approx(float(ref_norm), rel=1e-6)
    assert norm == pytest.approx(float(np.linalg.norm(grad.astype(np.float64))), rel=1e-6)
    np.testing.assert_allclose(ours.grad.numpy(), ref.grad.numpy(), rtol=1e-6, atol=1e-9)
    if max_norm < norm:  # clipped in place to the max norm (less the 1e-6)
        assert float(np.linalg.norm(ours.grad.numpy())) == pytest.approx(max_norm, rel=1e-5)
    else:
        np.testing.assert_array_equal(ours.grad.numpy(), grad)
    np.testing.assert_allclose(ours.detach().numpy(), ref.detach().numpy(), atol=1e-7)


def test_step_without_max_norm_does_not_clip():
    grad = np.full(8, 100.0, dtype=np.float32)
    ours = flat_param(np.zeros(8, dtype=np.float32))
    ours.grad.copy_(torch.from_numpy(grad))
    opt = Adam(ours, lr=0.1)
    norm = step(opt, None)
    assert np.isnan(norm)
    np.testing.assert_array_equal(ours.grad.numpy(), grad)
    assert opt.step_count == 1
    np.testing.assert_allclose(ours.detach().numpy(), -0.1, rtol=1e-5)  # Adam's first step: −lr·sign


# ------------------------------------------------------------------------ normalize

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalize_uses_the_sample_std(dtype):
    x = (np.random.default_rng(8).normal(size=37) * 4.0 + 3.0).astype(dtype)
    before = x.copy()
    got = normalize(x)
    want = (x - x.mean()) / (x.std(ddof=1) + 1e-8)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12}
    np.testing.assert_allclose(got, want, **tol)
    t = torch.from_numpy(x)
    np.testing.assert_allclose(got, ((t - t.mean()) / (t.std() + 1e-8)).numpy(), **tol)
    # not the population std (which would be a factor √(n/(n−1)) ≈ 1.014 off)
    assert not np.allclose(got, (x - x.mean()) / x.std(), rtol=1e-3)
    np.testing.assert_array_equal(x, before)  # the input is left alone
    assert got.dtype == dtype
    # and the eps: a constant vector stays finite (all zeros)
    np.testing.assert_array_equal(normalize(np.full(4, 2.5, dtype=dtype)), 0.0)


def test_normalize_leaves_fewer_than_two_samples_alone():
    np.testing.assert_array_equal(normalize(np.array([3.0])), [3.0])
    assert normalize(np.array([], dtype=np.float32)).size == 0
