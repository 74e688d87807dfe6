"""The learned bias field between the ITN and the STN (``itn_options={"bias_field": degree}``)."""

import numpy as np
import pytest
import torch

from istn_sk import ISTNAdapter
from istn_sk.nn import PolynomialBiasField
from istn_sk.nn._bias_field import monomial_exponents
from istn_sk.nn._coordinates import coordinate_channels


def _scan(shape=(12, 12, 12), seed=0):
    """A 'brain' of values in (-0.6, 0.6) inside a cube, exact 0 around it."""
    rng = np.random.default_rng(seed)
    x = torch.zeros(1, 1, *shape)
    inside = tuple(slice(2, s - 2) for s in shape)
    x[(0, 0, *inside)] = torch.from_numpy(rng.uniform(-0.6, 0.6, [s - 4 for s in shape])).float()
    return x


def test_monomials_up_to_the_degree_constant_first():
    assert monomial_exponents(3, 1) == [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)]
    assert len(monomial_exponents(3, 2)) == 10
    assert len(monomial_exponents(2, 3)) == 10


def test_a_fresh_field_is_the_identity_and_never_touches_the_background():
    x = _scan()
    field = PolynomialBiasField(3, 2)
    assert torch.allclose(field(x, x), x, atol=1e-6)
    with torch.no_grad():
        field.gain.normal_(0, 0.3)
        field.offset.normal_(0, 0.3)
    y = field(x, x)
    background = x == 0
    assert torch.equal(y[background], x[background])
    assert (y - x)[~background].abs().mean() > 0.05


def test_it_learns_a_site_receive_field_exactly():
    # the simulated bias: a linear log-gradient in scanner coordinates, then z-scoring;
    # in the ITN's scale that is a smooth gain and offset, which degree 1 holds exactly
    x = _scan(seed=1)
    brain = x != 0
    p = coordinate_channels(x)[0]
    u = torch.atanh(0.95 * x)
    mapped = torch.tanh(u * torch.exp(0.4 * p[0] - 0.3 * p[2]) + 0.5 * p[1]) / 0.95
    true = torch.where(brain, mapped.clamp(-1, 1), x)
    field = PolynomialBiasField(3, 1)
    optimiser = torch.optim.Adam(field.parameters(), lr=0.05)
    before = (x - true).abs().mean().item()
    for _ in range(300):
        optimiser.zero_grad()
        loss = (field(x, x) - true).abs().mean()
        loss.backward()
        optimiser.step()
    assert before > 0.05
    assert loss.item() < 0.05 * before
    assert field.gain.detach()[[1, 3]].numpy() == pytest.approx([0.4, -0.3], abs=0.02)
    assert field.offset.detach()[2].item() == pytest.approx(0.5, abs=0.02)


def test_the_adapter_builds_it_outside_the_identity_term():
    rng = np.random.default_rng(0)
    X = np.tanh(rng.normal(size=(16, 1, 12, 12))).astype(np.float32)
    sd = np.r_[np.ones(8, int), -2 * np.ones(8, int)]
    adapter = ISTNAdapter(nf=4, max_epochs=2, batch_size=4, random_state=0,
                          itn_options={"bias_field": 2}).fit(X, sample_domain=sd)
    istn = adapter.net_.module_["s2t"]
    assert isinstance(istn.bias_field, PolynomialBiasField)
    assert istn.bias_field.gain.shape == (6,)
    # it trained (the adversarial term moves it) ...
    assert istn.bias_field.gain.detach().abs().sum() > 0
    # ... and the identity term sees the ITN alone
    images = torch.from_numpy(X[:2])
    with torch.no_grad():
        assert torch.equal(istn.appearance(images), istn.itn(images))


@pytest.mark.parametrize("degree", [-1, 4, 1.5, True, "1"])
def test_a_bad_degree_is_one_clear_error(degree):
    X = np.zeros((4, 1, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"itn_options\['bias_field'\] must be a polynomial"):
        ISTNAdapter(itn_options={"bias_field": degree}).fit(
            X, sample_domain=np.r_[1, 1, -2, -2])
