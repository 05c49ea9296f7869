"""Random numbers as PyTorch scripts use them: dg.Generator, the global seed functions, the in-place
random fills and bernoulli/poisson, and draws inside @dg.function that are new at every call.

dualgraph draws from numpy's PCG64, so a seed does not give torch's numbers: the tests check
reproducibility, independence of streams, ranges and moments (against the distributions' known
means and variances), and the API's shapes and dtypes against torch where it is installed."""
import math

import numpy as np
import pytest

import dualgraph as dg
import dualgraph.utils.data as data


def test_generator_is_its_own_reproducible_stream():
    g1 = dg.Generator().manual_seed(42)
    g2 = dg.Generator()
    assert g2.manual_seed(42) is g2
    a = dg.randn(5, generator=g1).numpy()
    dg.manual_seed(0)
    dg.randn(100)  # the global stream moving does not move a Generator's
    b = dg.randn(5, generator=g2).numpy()
    np.testing.assert_array_equal(a, b)
    assert g1.initial_seed() == 42
    assert dg.Generator().initial_seed() == 67280421310721  # torch.Generator's initial seed
    assert not np.array_equal(dg.randn(5, generator=dg.Generator().manual_seed(43)).numpy(), a)


def test_get_state_and_set_state_replay_the_stream():
    g = dg.Generator().manual_seed(7)
    dg.rand(3, generator=g)
    state = g.get_state()
    assert state.dtype == np.uint8 and tuple(state.shape) == (37,)
    first = dg.rand(4, generator=g).numpy()
    g.set_state(state)
    np.testing.assert_array_equal(dg.rand(4, generator=g).numpy(), first)
    with pytest.raises(dg.InvalidValue, match="set_state"):
        g.set_state(dg.zeros(5, dtype="uint8"))


def test_global_seed_functions():
    assert dg.manual_seed(5) is dg.default_generator
    assert dg.initial_seed() == 5
    x = dg.rand(3).numpy()
    dg.manual_seed(5)
    np.testing.assert_array_equal(dg.rand(3).numpy(), x)
    state = dg.get_rng_state()
    y = dg.randn(4).numpy()
    dg.set_rng_state(state)
    np.testing.assert_array_equal(dg.randn(4).numpy(), y)
    s = dg.seed()  # torch.seed(): a fresh seed from entropy, returned and in use
    assert isinstance(s, int) and dg.initial_seed() == s
    with dg.random.fork_rng():
        inside = dg.rand(2).numpy()
    np.testing.assert_array_equal(dg.rand(2).numpy(), inside)
    assert dg.manual_seed(-1) is dg.default_generator and dg.initial_seed() == 2 ** 64 - 1  # torch folds it
    with pytest.raises(TypeError, match="seed"):
        dg.manual_seed(1.5)


def test_generator_argument_of_every_drawing_function():
    g = dg.Generator().manual_seed(1)
    draws = [dg.rand(2, 3, generator=g), dg.randn(2, 3, generator=g), dg.randint(0, 5, (6,), generator=g),
             dg.randperm(6, generator=g), dg.normal(0.0, 1.0, (4,), generator=g),
             dg.multinomial(dg.tensor([0.2, 0.8]), 3, replacement=True, generator=g),
             dg.bernoulli(dg.full((5,), 0.5), generator=g)]
    g.manual_seed(1)
    again = [dg.rand(2, 3, generator=g), dg.randn(2, 3, generator=g), dg.randint(0, 5, (6,), generator=g),
             dg.randperm(6, generator=g), dg.normal(0.0, 1.0, (4,), generator=g),
             dg.multinomial(dg.tensor([0.2, 0.8]), 3, replacement=True, generator=g),
             dg.bernoulli(dg.full((5,), 0.5), generator=g)]
    for a, b in zip(draws, again):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert draws[2].dtype == np.int64 and draws[3].dtype == np.int64
    assert sorted(draws[3].numpy().tolist()) == list(range(6))


def test_generator_in_the_data_pipeline():
    ds = data.TensorDataset(np.arange(10))
    first, _ = data.random_split(ds, [7, 3], generator=dg.Generator().manual_seed(42))
    again, _ = data.random_split(ds, [7, 3], generator=dg.Generator().manual_seed(42))
    assert list(first.indices) == list(again.indices)
    order = [int(b[0]) for b in data.DataLoader(ds, shuffle=True, generator=dg.Generator().manual_seed(3))]
    assert sorted(order) == list(range(10))
    assert order == [int(b[0]) for b in data.DataLoader(ds, shuffle=True,
                                                        generator=dg.Generator().manual_seed(3))]


def test_inplace_fills_ranges_and_moments():
    dg.manual_seed(0)
    n = 200_000
    u = dg.empty(n).uniform_(-2, 3).numpy()
    assert u.min() >= -2 and u.max() < 3 and abs(u.mean() - 0.5) < 0.02
    z = dg.empty(n, dtype="float64").normal_(1.5, 2.0).numpy()
    assert abs(z.mean() - 1.5) < 0.02 and abs(z.std() - 2.0) < 0.02
    b = dg.empty(n).bernoulli_(0.3).numpy()
    assert set(np.unique(b)) <= {0.0, 1.0} and abs(b.mean() - 0.3) < 0.01
    e = dg.empty(n).exponential_(4.0).numpy()
    assert e.min() >= 0 and abs(e.mean() - 0.25) < 0.005
    geo = dg.empty(n).geometric_(0.25).numpy()
    assert geo.min() >= 1 and np.all(geo == np.round(geo)) and abs(geo.mean() - 4.0) < 0.05
    ln = dg.empty(n, dtype="float64").log_normal_(0.0, 0.5).numpy()
    assert abs(ln.mean() - math.exp(0.125)) < 0.01
    c = dg.empty(n).cauchy_(1.0, 2.0).numpy()
    assert abs(np.median(c) - 1.0) < 0.05
    r = dg.empty(n).random_(3, 7).numpy()
    assert set(np.unique(r)) == {3.0, 4.0, 5.0, 6.0}
    r = dg.empty(1000, dtype="int64").random_(5).numpy()
    assert r.min() == 0 and r.max() == 4
    big = dg.empty(1000).random_().numpy()
    assert big.max() <= 2 ** 24 and big.max() > 2 ** 20


def test_inplace_fill_returns_self_and_respects_autograd():
    t = dg.zeros(3)
    assert t.uniform_() is t and t.normal_() is t
    w = dg.zeros(3, requires_grad=True)
    with pytest.raises(dg.AutogradError, match="uniform_"):
        w.uniform_()
    with dg.no_grad():
        w.uniform_(5, 6)
    assert w.requires_grad and (w.numpy() >= 5).all()
    with pytest.raises(dg.DTypeError, match=r"normal_.*int64"):
        dg.zeros(3, dtype="int64").normal_()
    with pytest.raises(dg.InvalidValue, match="bernoulli_"):
        dg.zeros(3).bernoulli_(1.5)


def test_bernoulli_and_poisson():
    dg.manual_seed(1)
    p = dg.tensor([0.0, 1.0, 0.5] * 20000)
    b = dg.bernoulli(p).numpy().reshape(-1, 3)
    assert (b[:, 0] == 0).all() and (b[:, 1] == 1).all() and abs(b[:, 2].mean() - 0.5) < 0.01
    assert dg.bernoulli(p).dtype == np.float32
    p.requires_grad_(True)
    assert not dg.bernoulli(p).requires_grad
    rates = dg.tensor([0.0, 2.0, 10.0] * 20000)
    k = dg.poisson(rates).numpy().reshape(-1, 3)
    assert (k[:, 0] == 0).all() and abs(k[:, 1].mean() - 2.0) < 0.05 and abs(k[:, 2].var() - 10.0) < 0.5
    with pytest.raises(dg.InvalidValue, match="poisson"):
        dg.poisson(dg.tensor([-1.0]))


def test_normal_with_tensor_mean_draws_per_element():
    dg.manual_seed(2)
    mean = dg.arange(0, 10000).float()
    out = dg.normal(mean, 0.1)
    assert tuple(out.shape) == (10000,)
    resid = out.numpy() - mean.numpy()
    assert abs(resid.std() - 0.1) < 0.005  # one draw per element, not one shared draw
    out = dg.normal(dg.zeros(2, 1), dg.ones(1, 3))
    assert tuple(out.shape) == (2, 3) and len(np.unique(out.numpy())) == 6


def test_draws_inside_a_traced_function_are_new_at_every_call():
    f = dg.function(lambda x: x + dg.randn(64))
    x = dg.zeros(64)
    assert not np.array_equal(f(x).numpy(), f(x).numpy())
    g = dg.function(lambda x: x + dg.randperm(16).float())
    a, b = g(dg.zeros(16)).numpy(), g(dg.zeros(16)).numpy()
    assert sorted(a.tolist()) == list(range(16)) and sorted(b.tolist()) == list(range(16))
    h = dg.function(lambda x: x + dg.randint(0, 4, (4000,)))
    r = h(dg.zeros(4000, dtype="int64")).numpy()
    assert r.dtype == np.int64 and set(np.unique(r)) == {0, 1, 2, 3}
    k = dg.function(lambda x: x.clone().uniform_(2, 3))
    u1, u2 = k(dg.zeros(8)).numpy(), k(dg.zeros(8)).numpy()
    assert (u1 >= 2).all() and (u1 < 3).all() and not np.array_equal(u1, u2)


def test_a_generator_object_inside_a_traced_function_is_refused():
    g = dg.Generator().manual_seed(0)
    f = dg.function(lambda x: x + dg.randn(3, generator=g))
    with pytest.raises(dg.InvalidValue, match="generator"):
        f(dg.zeros(3))


def test_api_matches_torch():
    torch = pytest.importorskip("torch")
    g = dg.Generator().manual_seed(0)
    tg = torch.Generator().manual_seed(0)
    for ours, theirs in [(dg.rand(2, 3, generator=g), torch.rand(2, 3, generator=tg)),
                         (dg.randint(3, 9, (4,), generator=g), torch.randint(3, 9, (4,), generator=tg)),
                         (dg.randperm(5, generator=g), torch.randperm(5, generator=tg)),
                         (dg.normal(dg.zeros(2, 1), dg.ones(3)), torch.normal(torch.zeros(2, 1), torch.ones(3))),
                         (dg.empty(3, dtype="float64").random_(), torch.empty(3, dtype=torch.float64).random_()),
                         (dg.bernoulli(dg.full((4,), 0.5, dtype="float64")),
                          torch.bernoulli(torch.full((4,), 0.5, dtype=torch.float64)))]:
        assert tuple(ours.shape) == tuple(theirs.shape)
        assert str(ours.dtype) == str(theirs.dtype).replace("torch.", "")
    assert dg.Generator().initial_seed() == torch.Generator().initial_seed()
    assert tuple(dg.get_rng_state().shape) != ()  # a uint8 tensor, as torch's (its length is PCG64's)
