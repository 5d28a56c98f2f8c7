"""pgrun.returns against a naive per-episode reference.

The reference splits every env column of a T×N rollout into episode segments by scanning
it step by step, then computes each quantity with explicit sums over the segment. The
random rollouts follow gymnasium's next-step autoreset: after every episode end comes a
reset step (reward 0, terminated = truncated = False, invalid); some columns also go
idle (every later step invalid, with garbage rewards/dones), as in
``Collector.collect_episodes``. Only valid steps are compared.
"""

from __future__ import annotations

import numpy as np
import pytest

from pgrun.returns import episode_total_return, gae, next_values, reward_to_go
from pgrun.rollout import Batch

T, N = 40, 5
SEEDS = [0, 1, 2, 3, 4, 5]


# --------------------------------------------------------------------------- data
def make_rollout(seed: int, T: int = T, N: int = N, p_end: float = 0.15) -> dict:
    """A random T×N rollout with terminations, truncations, autoreset steps and idle
    tails. values/rewards are float64 so the comparisons can be tight."""
    rng = np.random.default_rng(seed)
    rewards = np.zeros((T, N))
    terminated = np.zeros((T, N), dtype=bool)
    truncated = np.zeros((T, N), dtype=bool)
    valid = np.zeros((T, N), dtype=bool)
    for i in range(N):
        # column 0 starts on a reset step (the previous batch ended an episode on its
        # last row); the last column goes idle after its third episode
        pending_reset = i == 0
        idle = False
        episodes_done = 0
        for t in range(T):
            if pending_reset:
                pending_reset = False  # reward 0, no done, invalid
                continue
            if idle:
                # an env that delivered its episodes keeps stepping (and autoresetting):
                # garbage, all invalid
                rewards[t, i] = rng.normal()
                terminated[t, i] = rng.random() < 0.2
                truncated[t, i] = rng.random() < 0.2
                pending_reset = bool(terminated[t, i] or truncated[t, i])
                continue
            valid[t, i] = True
            rewards[t, i] = rng.normal()
            u = rng.random()
            if u < p_end:
                kind = rng.integers(3)
                terminated[t, i] = kind in (0, 2)
                truncated[t, i] = kind in (1, 2)  # kind 2: both (termination wins)
                episodes_done += 1
                pending_reset = True
                if i == N - 1 and episodes_done == 3:
                    idle = True
    values = rng.normal(size=(T, N))
    last_value = rng.normal(size=N)
    return dict(rewards=rewards, terminated=terminated, truncated=truncated, valid=valid,
                values=values, last_value=last_value)


def segments(terminated, truncated, valid, i):
    """Episode segments of column i as (start, end, kind), kind ∈ term/trunc/cut,
    found by scanning step by step."""
    out = []
    start = None
    for t in range(len(valid)):
        if not valid[t, i]:
            assert start is None, "an invalid step inside an episode"
            continue
        if start is None:
            start = t
        if terminated[t, i]:
            out.append((start, t, "term"))
            start = None
        elif truncated[t, i]:
            out.append((start, t, "trunc"))
            start = None
    if start is not None:
        out.append((start, len(valid) - 1, "cut"))
    return out


def naive_gae(d, gamma, lam, boot_term=False, boot_trunc=True):
    """A_t = Σ_l (γλ)^l δ_{t+l} within the segment. ``boot_term``/``boot_trunc`` select
    (wrong/right) variants of the bootstrap at the segment's end."""
    T_, N_ = d["rewards"].shape
    r, v, lv = d["rewards"], d["values"], d["last_value"]
    adv = np.full((T_, N_), np.nan)
    for i in range(N_):
        for s, e, kind in segments(d["terminated"], d["truncated"], d["valid"], i):
            delta = {}
            for t in range(s, e + 1):
                if t < e:
                    v_next = v[t + 1, i]
                elif kind == "cut":
                    v_next = lv[i]
                elif kind == "trunc":
                    # V of the final observation: stored on the reset row that follows
                    v_next = (v[e + 1, i] if e + 1 < T_ else lv[i]) if boot_trunc else 0.0
                else:  # term
                    v_next = (v[e + 1, i] if e + 1 < T_ else lv[i]) if boot_term else 0.0
                delta[t] = r[t, i] + gamma * v_next - v[t, i]
            for t in range(s, e + 1):
                adv[t, i] = sum((gamma * lam) ** (u - t) * delta[u] for u in range(t, e + 1))
    return adv


def naive_mc_advantage(d, gamma):
    """G_t − V(s_t), G_t = Σ_l γ^l r_{t+l} + γ^{e−t+1}·bootstrap (0 on termination,
    V(final obs) on truncation, last_value at the batch cut)."""
    T_, N_ = d["rewards"].shape
    r, v, lv = d["rewards"], d["values"], d["last_value"]
    out = np.full((T_, N_), np.nan)
    for i in range(N_):
        for s, e, kind in segments(d["terminated"], d["truncated"], d["valid"], i):
            boot = {"term": 0.0, "cut": lv[i],
                    "trunc": v[e + 1, i] if e + 1 < T_ else lv[i]}[kind]
            for t in range(s, e + 1):
                g = sum(gamma ** (u - t) * r[u, i] for u in range(t, e + 1))
                g += gamma ** (e - t + 1) * boot
                out[t, i] = g - v[t, i]
    return out


def naive_td_error(d, gamma):
    T_, N_ = d["rewards"].shape
    r, v, lv = d["rewards"], d["values"], d["last_value"]
    out = np.full((T_, N_), np.nan)
    for i in range(N_):
        for t in range(T_):
            if not d["valid"][t, i]:
                continue
            v_next = v[t + 1, i] if t + 1 < T_ else lv[i]
            if d["terminated"][t, i]:
                v_next = 0.0
            out[t, i] = r[t, i] + gamma * v_next - v[t, i]
    return out


def naive_reward_to_go(d, gamma):
    T_, N_ = d["rewards"].shape
    out = np.full((T_, N_), np.nan)
    for i in range(N_):
        for s, e, _ in segments(d["terminated"], d["truncated"], d["valid"], i):
            for t in range(s, e + 1):
                out[t, i] = sum(gamma ** (u - t) * d["rewards"][u, i] for u in range(t, e + 1))
    return out


def naive_starts(d):
    starts = np.zeros_like(d["valid"])
    for i in range(d["valid"].shape[1]):
        for s, _, _ in segments(d["terminated"], d["truncated"], d["valid"], i):
            starts[s, i] = True
    return starts


def as_batch(d) -> Batch:
    T_, N_ = d["rewards"].shape
    return Batch(obs=np.zeros((T_, N_, 2), np.float32), actions=np.zeros((T_, N_), np.int64),
                 logp=np.zeros((T_, N_), np.float32), values=d["values"], rewards=d["rewards"],
                 terminated=d["terminated"], truncated=d["truncated"], valid=d["valid"],
                 last_value=d["last_value"])


def run_gae(d, gamma, lam):
    nv = next_values(d["values"], d["last_value"])
    return gae(d["rewards"], d["values"], nv, d["terminated"], d["truncated"], gamma, lam)


# --------------------------------------------------------------------------- sanity of the data
@pytest.mark.parametrize("seed", SEEDS)
def test_random_rollouts_cover_every_case(seed):
    d = make_rollout(seed)
    valid, term, trunc = d["valid"], d["terminated"], d["truncated"]
    assert (term & ~trunc & valid).any()
    assert (trunc & ~term & valid).any()
    assert (~valid).any()
    # every valid episode end is followed by an invalid reset step (or the batch end)
    ends = np.argwhere((term | trunc) & valid)
    for t, i in ends:
        if t + 1 < T:
            assert not valid[t + 1, i]
    # reset steps carry reward 0 and no done (except in idle tails)
    reset_rows = np.zeros_like(valid)
    reset_rows[1:] = ((term | trunc) & valid)[:-1]
    assert np.all(d["rewards"][reset_rows] == 0)
    assert not np.any((term | trunc)[reset_rows])
    # some segment is cut by the batch end
    assert any(seg[2] == "cut" for i in range(N) for seg in segments(term, trunc, valid, i))


def test_random_rollouts_have_mid_batch_truncation_and_last_row_ends():
    kinds = set()
    for seed in SEEDS:
        d = make_rollout(seed)
        for i in range(N):
            for _s, e, kind in segments(d["terminated"], d["truncated"], d["valid"], i):
                kinds.add((kind, e < T - 1))
    assert ("trunc", True) in kinds and ("term", True) in kinds and ("cut", False) in kinds


# --------------------------------------------------------------------------- next_values
def test_next_values_shifts_by_one():
    values = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
    last = np.array([4.0, 40.0])
    expected = np.array([[2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])
    np.testing.assert_array_equal(next_values(values, last), expected)


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_next_values_random(seed):
    d = make_rollout(seed)
    nv = next_values(d["values"], d["last_value"])
    assert nv.shape == (T, N)
    for t in range(T):
        for i in range(N):
            want = d["values"][t + 1, i] if t + 1 < T else d["last_value"][i]
            assert nv[t, i] == want


# --------------------------------------------------------------------------- gae
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("gamma", "lam"), [(0.99, 0.95), (0.9, 0.5), (0.5, 0.8), (1.0, 1.0),
                                            (0.97, 0.0), (0.8, 1.0)])
def test_gae_matches_naive_reference(seed, gamma, lam):
    d = make_rollout(seed)
    adv, ret = run_gae(d, gamma, lam)
    ref = naive_gae(d, gamma, lam)
    m = d["valid"]
    assert not np.isnan(ref[m]).any()
    np.testing.assert_allclose(adv[m], ref[m], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ret, adv + d["values"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("gamma", [0.99, 0.9, 0.5])
def test_gae_lambda_one_is_monte_carlo_advantage(seed, gamma):
    d = make_rollout(seed)
    adv, ret = run_gae(d, gamma, 1.0)
    mc = naive_mc_advantage(d, gamma)
    m = d["valid"]
    np.testing.assert_allclose(adv[m], mc[m], rtol=1e-10, atol=1e-10)
    # the returns are then the bootstrapped Monte-Carlo returns G_t
    np.testing.assert_allclose(ret[m], (mc + d["values"])[m], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("gamma", [0.99, 0.7])
def test_gae_lambda_zero_is_td_error(seed, gamma):
    d = make_rollout(seed)
    adv, _ = run_gae(d, gamma, 0.0)
    td = naive_td_error(d, gamma)
    m = d["valid"]
    np.testing.assert_allclose(adv[m], td[m], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("seed", SEEDS)
def test_gae_bootstrap_discriminates_wrong_variants(seed):
    """The reference comparison would catch bootstrapping on termination or not
    bootstrapping on truncation: those variants differ from gae on valid steps."""
    d = make_rollout(seed)
    gamma, lam = 0.95, 0.9
    adv, _ = run_gae(d, gamma, lam)
    m = d["valid"]
    wrong_term = naive_gae(d, gamma, lam, boot_term=True)
    wrong_trunc = naive_gae(d, gamma, lam, boot_trunc=False)
    assert np.abs(adv[m] - wrong_term[m]).max() > 1e-3
    assert np.abs(adv[m] - wrong_trunc[m]).max() > 1e-3
    np.testing.assert_allclose(adv[m], naive_gae(d, gamma, lam)[m], rtol=1e-10, atol=1e-10)


def test_gae_termination_vs_truncation_by_hand():
    """One env, two one-step episodes, each followed by its reset step:
    row 0 terminates, row 1 resets, row 2 is truncated, row 3 resets.
    V(final obs) of an episode sits on the reset row after it."""
    gamma, lam = 0.9, 0.8
    rewards = np.array([[1.0], [0.0], [2.0], [0.0]])
    values = np.array([[0.5], [7.0], [0.25], [3.0]])  # rows 1, 3: V(final obs)
    last_value = np.array([100.0])
    terminated = np.array([[True], [False], [False], [False]])
    truncated = np.array([[False], [False], [True], [False]])
    nv = next_values(values, last_value)
    adv, ret = gae(rewards, values, nv, terminated, truncated, gamma, lam)
    # terminated: no bootstrap, nothing from later steps
    assert adv[0, 0] == pytest.approx(1.0 - 0.5)
    # truncated: bootstrap V(final obs) = 3.0, nothing from later steps
    assert adv[2, 0] == pytest.approx(2.0 + 0.9 * 3.0 - 0.25)
    assert ret[2, 0] == pytest.approx(2.0 + 0.9 * 3.0)
    # termination and truncation together: termination wins (no bootstrap)
    both = gae(rewards[2:3], values[2:3], nv[2:3], np.array([[True]]), np.array([[True]]),
               gamma, lam)[0]
    assert both[0, 0] == pytest.approx(2.0 - 0.25)


def test_gae_truncation_on_last_row_bootstraps_last_value():
    gamma, lam = 0.9, 0.95
    rewards = np.array([[1.0], [1.0]])
    values = np.array([[2.0], [4.0]])
    last_value = np.array([10.0])  # V(final obs) when the truncation is on the last row
    terminated = np.zeros((2, 1), bool)
    truncated = np.array([[False], [True]])
    adv, _ = gae(rewards, values, next_values(values, last_value), terminated, truncated,
                 gamma, lam)
    d1 = 1.0 + 0.9 * 10.0 - 4.0
    d0 = 1.0 + 0.9 * 4.0 - 2.0
    np.testing.assert_allclose(adv[:, 0], [d0 + 0.9 * 0.95 * d1, d1])


def test_gae_off_by_one_by_hand():
    """3 steps, γ = 0.5, λ = 0.5, no episode end, V = [1, 2, 3], last_value = 4:
    δ = [1 + .5·2 − 1, 2 + .5·3 − 2, 3 + .5·4 − 3] = [1, 1.5, 2]
    A_2 = 2;  A_1 = 1.5 + .25·2 = 2;  A_0 = 1 + .25·1.5 + .0625·2 = 1.5."""
    rewards = np.array([[1.0], [2.0], [3.0]])
    values = np.array([[1.0], [2.0], [3.0]])
    nv = next_values(values, np.array([4.0]))
    no = np.zeros((3, 1), bool)
    adv, ret = gae(rewards, values, nv, no, no, 0.5, 0.5)
    np.testing.assert_allclose(adv[:, 0], [1.5, 2.0, 2.0])
    np.testing.assert_allclose(ret[:, 0], [2.5, 4.0, 5.0])


def test_gae_float32_dtype_and_shape():
    d = make_rollout(0)
    f = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in d.items()}
    adv, ret = run_gae(f, 0.99, 0.95)
    assert adv.dtype == np.float32 and ret.dtype == np.float32
    assert adv.shape == (T, N)
    ref = naive_gae(d, 0.99, 0.95)
    np.testing.assert_allclose(adv[d["valid"]], ref[d["valid"]], rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- reward_to_go
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("gamma", [1.0, 0.99, 0.5])
def test_reward_to_go_matches_naive_reference(seed, gamma):
    d = make_rollout(seed)
    dones = d["terminated"] | d["truncated"]
    rtg = reward_to_go(d["rewards"], dones, gamma)
    ref = naive_reward_to_go(d, gamma)
    m = d["valid"]
    np.testing.assert_allclose(rtg[m], ref[m], rtol=1e-10, atol=1e-10)


def test_reward_to_go_off_by_one_by_hand():
    """γ = 0.5, rewards [1, 2, 3]:
    no end:            G = [1 + .5·2 + .25·3, 2 + .5·3, 3] = [2.75, 3.5, 3]
    end at step 1:     G = [1 + .5·2, 2, 3]              = [2, 2, 3]
    end at step 0:     G = [1, 2 + .5·3, 3]              = [1, 3.5, 3]"""
    r = np.array([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [3.0, 3.0, 3.0]])
    dones = np.array([[False, False, True], [False, True, False], [False, False, False]])
    rtg = reward_to_go(r, dones, 0.5)
    np.testing.assert_allclose(rtg, [[2.75, 2.0, 1.0], [3.5, 2.0, 3.5], [3.0, 3.0, 3.0]])


def test_reward_to_go_does_not_bootstrap_truncation():
    r = np.array([[1.0], [5.0]])
    dones = np.array([[True], [False]])  # step 0 truncated: no bootstrap, cut
    np.testing.assert_allclose(reward_to_go(r, dones, 0.9)[:, 0], [1.0, 5.0])


# --------------------------------------------------------------------------- episode_total_return
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_episode_total_return_broadcasts_first_step_return(seed, gamma):
    d = make_rollout(seed)
    starts = as_batch(d).episode_starts()
    np.testing.assert_array_equal(starts, naive_starts(d))
    dones = d["terminated"] | d["truncated"]
    rtg = reward_to_go(d["rewards"], dones, gamma)
    tot = episode_total_return(rtg, starts)
    ref_rtg = naive_reward_to_go(d, gamma)
    ref = np.full((T, N), np.nan)
    for i in range(N):
        for s, e, _ in segments(d["terminated"], d["truncated"], d["valid"], i):
            g0 = sum(gamma ** (u - s) * d["rewards"][u, i] for u in range(s, e + 1))
            assert g0 == pytest.approx(ref_rtg[s, i])
            ref[s:e + 1, i] = g0
    m = d["valid"]
    np.testing.assert_allclose(tot[m], ref[m], rtol=1e-10, atol=1e-10)


def test_episode_total_return_by_hand():
    """One env: episode A = rows 0-1 (terminated at 1), reset row 2, episode B = rows 3-4
    (cut at the batch end). γ = 0.5: G_0(A) = 1 + .5·2 = 2, G_0(B) = 4 + .5·8 = 8."""
    rewards = np.array([[1.0], [2.0], [0.0], [4.0], [8.0]])
    term = np.array([[False], [True], [False], [False], [False]])
    valid = np.array([[True], [True], [False], [True], [True]])
    d = dict(rewards=rewards, terminated=term, truncated=np.zeros_like(term), valid=valid,
             values=np.zeros((5, 1)), last_value=np.zeros(1))
    starts = as_batch(d).episode_starts()
    np.testing.assert_array_equal(starts[:, 0], [True, False, False, True, False])
    tot = episode_total_return(reward_to_go(rewards, term, 0.5), starts)
    np.testing.assert_allclose(tot[valid], [2.0, 2.0, 8.0, 8.0])


def test_episode_starts_after_reset_row_at_batch_start():
    """Row 0 invalid (reset step after the previous batch's last episode): the episode
    starts at row 1; a valid row 0 that continues an episode counts as a start."""
    valid = np.array([[False, True], [True, True], [True, False]])
    term = np.array([[False, False], [False, True], [False, False]])
    d = dict(rewards=np.zeros((3, 2)), terminated=term, truncated=np.zeros_like(term),
             valid=valid, values=np.zeros((3, 2)), last_value=np.zeros(2))
    starts = as_batch(d).episode_starts()
    np.testing.assert_array_equal(starts, [[False, True], [True, False], [False, False]])
