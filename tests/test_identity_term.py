"""The identity term: on the whole ISTN (the paper's) or on its ITN alone (``identity_on``)."""

import numpy as np
import pytest
import torch

from istn_sk import ISTNAdapter
from istn_sk._synthetic import make_shifted_shapes


@pytest.fixture(scope="module")
def shapes():
    return make_shifted_shapes(16, (12, 12), shift=2.0, random_state=0)


def _identity_gradients(identity_on: str, shapes, mode="unidirectional"):
    """Gradient norms of the ITN and STN parameters from the identity term alone."""
    X, _, sd = shapes
    adapter = ISTNAdapter(nf=2, max_epochs=1, batch_size=8, identity_on=identity_on, mode=mode,
                          random_state=0).fit(X, sample_domain=sd)
    net = adapter.net_
    net.module_.train()
    source, target = (torch.from_numpy(X[mask]) for mask in (sd > 0, sd < 0))
    terms, _ = net.istn_losses(source, target)
    net.module_.zero_grad()
    terms["idt_loss"].backward()
    norms = {}
    for direction, istn in net.module_.items():
        for part in ("itn", "stn"):
            grads = [p.grad.norm() for p in getattr(istn, part).parameters()
                     if p.grad is not None]
            norms[direction, part] = float(torch.stack(grads).sum()) if grads else 0.0
    return norms


@pytest.mark.parametrize("mode", ["unidirectional", "cyclegan"])
def test_an_identity_term_on_the_itn_leaves_the_stn_alone(shapes, mode):
    on_itn = _identity_gradients("itn", shapes, mode)
    on_istn = _identity_gradients("istn", shapes, mode)
    for direction in ("s2t", "t2s") if mode == "cyclegan" else ("s2t",):
        assert on_itn[direction, "stn"] == 0.0
        assert on_itn[direction, "itn"] > 0.0
        assert on_istn[direction, "stn"] > 0.0


def test_the_paper_identity_term_is_the_same_function_as_before(shapes):
    # identity_on="istn" is ½λ‖ISTN(T) - T‖₁, computed here by hand
    X, _, sd = shapes
    adapter = ISTNAdapter(nf=2, max_epochs=1, batch_size=8, identity_on="istn",
                          random_state=0).fit(X, sample_domain=sd)
    net = adapter.net_
    target = torch.from_numpy(X[sd < 0])
    net.module_.eval()
    with torch.no_grad():
        by_hand = 0.5 * 10.0 * torch.mean(torch.abs(net.module_["s2t"](target) - target) / 2)
        term = net._identity_loss(net.module_["s2t"], target)
    np.testing.assert_allclose(float(term), float(by_hand), rtol=1e-6)


def test_an_unknown_identity_target_is_named(shapes):
    X, _, sd = shapes
    with pytest.raises(ValueError, match=r"identity_on must be one of \('itn', 'istn'\)"):
        ISTNAdapter(nf=2, max_epochs=1, identity_on="stn").fit(X, sample_domain=sd)
