"""Many source sites to one target: the conditioned and independent ISTNs, and N-site data."""

import copy
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn
import torch
from sklearn.base import clone
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline

from istn_sk import ISTNAdapter, TaskClassifier, load_model, make_shifted_shapes, save_model
from istn_sk._export import export
from istn_sk.datasets import (
    load_brain_sites,
    load_morpho_mnist_sites,
    make_brain_sites,
    simulate_brain_sites,
)
from istn_sk.model_selection import LeaveOneSiteOut, expand_sites
from istn_sk.nn import ISTN, AffineSTN, ImageTransformerNetwork
from istn_sk.nn._film import PerSiteNetworks, SiteConditionedISTN

TINY = dict(nf=2, max_epochs=2, batch_size=8, random_state=0)
MODES = ("conditioned", "independent")


def _digest(array) -> str:
    """A short hash of ``array`` rounded to 5 decimals (robust to the last float bits)."""
    rounded = np.round(np.asarray(array, dtype=np.float64), 5)
    return hashlib.sha256(rounded.tobytes()).hexdigest()[:16]


def _three_sites():
    """Three source sites (shifted by 1, 2, 3 px, darker) and one unshifted target."""
    Xs, ys, sds = [], [], []
    for site, shift in enumerate([1.0, 2.0, 3.0], start=1):
        X, y, sd = make_shifted_shapes(8, (16, 16), shift=shift, random_state=site)
        Xs.append(X[sd < 0])
        ys.append(y[sd < 0])
        sds.append(np.full(int((sd < 0).sum()), site))
    X, y, sd = make_shifted_shapes(8, (16, 16), shift=0.0, random_state=9)
    Xs.append(X[sd > 0])
    ys.append(y[sd > 0])
    sds.append(np.full(int((sd > 0).sum()), -1))
    return np.concatenate(Xs), np.concatenate(ys), np.concatenate(sds)


@pytest.fixture(scope="module")
def data():
    return _three_sites()


@pytest.fixture(scope="module")
def fitted(data):
    X, y, sd = data
    task = TaskClassifier(nf=2, max_epochs=1, batch_size=8, random_state=0)
    return {mode: ISTNAdapter(**TINY, multi_source=mode, task=task).fit(X, y, sample_domain=sd)
            for mode in MODES}


@pytest.mark.parametrize("mode", MODES)
def test_fit_on_three_sites(fitted, data, mode):
    X, _, sd = data
    adapter = fitted[mode]
    assert adapter.source_sites_.tolist() == [1, 2, 3]
    istn = adapter.net_.module_["s2t"]
    assert isinstance(istn, SiteConditionedISTN if mode == "conditioned" else PerSiteNetworks)
    assert istn.n_sites == 3
    critic = adapter.net_.discriminator_["target"]
    assert isinstance(critic, PerSiteNetworks) == (mode == "independent")
    assert len(adapter.history_) == TINY["max_epochs"]
    out = adapter.transform(X, sample_domain=sd)
    assert out.shape == X.shape and out.dtype == X.dtype
    np.testing.assert_array_equal(out[sd < 0], X[sd < 0])   # target rows unchanged
    assert np.isfinite(adapter.predict_proba(X[sd < 0])).all()   # the pooled task model


@pytest.mark.parametrize("mode", MODES)
def test_each_row_is_mapped_by_its_site(fitted, data, mode):
    X, _, sd = data
    adapter = fitted[mode]
    source = X[sd > 0]
    by_site = {site: adapter.transform(source, sample_domain=np.full(len(source), site))
               for site in (1, 2, 3)}
    assert np.abs(by_site[1] - by_site[2]).max() > 0
    mixed = adapter.transform(source, sample_domain=sd[sd > 0])
    for site in (1, 2, 3):
        rows = sd[sd > 0] == site
        np.testing.assert_allclose(mixed[rows], by_site[site][rows], atol=1e-6)
    explained = adapter.explain(source, sample_domain=sd[sd > 0])
    np.testing.assert_allclose(explained["output"], mixed, atol=1e-6)
    assert explained["displacement"].shape == (len(source), 2, 16, 16)


def test_independent_sites_do_not_share_weights(fitted, data):
    X, y, sd = data
    adapter = copy.deepcopy(fitted["independent"])
    net, istns = adapter.net_, adapter.net_.module_["s2t"]
    before = [[p.detach().clone() for p in istn.parameters()] for istn in istns.sites]
    rows = np.flatnonzero(sd == 1)[:4]
    batch = (torch.from_numpy(X[rows]), torch.from_numpy(X[sd < 0][:4]),
             torch.from_numpy(y[rows]), torch.zeros(4, dtype=torch.int64))
    net.train_step(batch)   # a batch of site 1 only
    changed = [any(not torch.equal(a, b) for a, b in zip(old, istn.parameters(), strict=True))
               for old, istn in zip(before, istns.sites, strict=True)]
    assert changed == [True, False, False]
    # and the map of site 1 is that site's own ISTN
    istns.eval()
    with torch.no_grad():
        image = torch.from_numpy(X[rows])
        np.testing.assert_allclose(istns(image, torch.zeros(4, dtype=torch.int64)).numpy(),
                                   istns.sites[0](image).numpy(), atol=1e-6)


def test_unseen_site_and_missing_sample_domain_are_clear_errors(fitted, data):
    X, _, sd = data
    adapter = fitted["conditioned"]
    with pytest.raises(ValueError, match=r"\[4\], never seen in fit.*\[1, 2, 3\]"):
        adapter.transform(X, sample_domain=np.where(sd == 3, 4, sd))
    with pytest.raises(ValueError, match="pass sample_domain"):
        adapter.transform(X)
    with pytest.raises(ValueError, match="pass sample_domain"):
        adapter.explain(X)
    with pytest.raises(ValueError, match="target rows"):
        adapter.explain(X, sample_domain=sd)
    with pytest.raises(ValueError, match="entries but X has"):
        adapter.transform(X, sample_domain=sd[:-1])


# Computed with the code before many-sites support existed (commit 7af1272): a fit on
@pytest.mark.parametrize("multi_source", MODES)
def test_one_source_site_runs_the_old_code_path(multi_source, tmp_path):
    X, _, sd = make_shifted_shapes(12, (16, 16), shift=2.0, random_state=0)
    for stn, extra in (("affine", {}), ("bspline", {"ema_decay": None})):
        adapter = ISTNAdapter(nf=2, max_epochs=2, batch_size=8, random_state=0, stn=stn,
                              multi_source=multi_source, **extra).fit(X, sample_domain=sd)
        istn = adapter.net_.module_["s2t"]
        assert type(istn) is ISTN and not getattr(istn, "takes_sites", False)
        assert not any("embedding" in name or "film" in name
                       for name, _ in adapter.net_.module_.named_parameters())
        assert adapter.source_sites_.tolist() == [1]
    loaded = load_model(save_model(adapter, tmp_path / "one.pt"))
    assert loaded.source_sites_.tolist() == [1]
    assert type(loaded.net_.module_["s2t"]) is ISTN
    # any positive id is still a source row of a one-site adapter, as before
    np.testing.assert_array_equal(adapter.transform(X, sample_domain=np.where(sd > 0, 7, sd)),
                                  adapter.transform(X, sample_domain=sd))


@pytest.mark.parametrize("mode", MODES)
def test_save_and_load_give_identical_transforms(fitted, data, mode, tmp_path):
    X, _, sd = data
    adapter = fitted[mode]
    loaded = load_model(save_model(adapter, tmp_path / "many.pt"))
    assert loaded.multi_source == mode and loaded.source_sites_.tolist() == [1, 2, 3]
    np.testing.assert_array_equal(loaded.transform(X, sample_domain=sd),
                                  adapter.transform(X, sample_domain=sd))
    np.testing.assert_array_equal(loaded.predict(X[sd < 0]), adapter.predict(X[sd < 0]))


def test_export_refuses_a_site_conditioned_network(fitted, tmp_path):
    with pytest.raises(ValueError, match="3 source sites"):
        export(fitted["conditioned"], tmp_path / "istn.onnx")


def test_clone_get_params_and_bad_values(data):
    X, y, sd = data
    adapter = ISTNAdapter(**TINY, multi_source="independent")
    assert clone(adapter).get_params()["multi_source"] == "independent"
    assert ISTNAdapter().get_params()["multi_source"] == "conditioned"
    with pytest.raises(ValueError, match="multi_source must be one of"):
        ISTNAdapter(**TINY, multi_source="pooled").fit(X, sample_domain=sd)
    with pytest.raises(ValueError, match=r"cyclegan.*several source sites"):
        ISTNAdapter(**TINY, mode="cyclegan").fit(X, sample_domain=sd)
    task = TaskClassifier(nf=2, max_epochs=1, random_state=0)
    with pytest.raises(ValueError, match=r"select_epoch.*several source sites"):
        ISTNAdapter(**TINY, task=task, select_epoch="prediction_entropy").fit(
            X, y, sample_domain=sd)


def test_conditioned_fit_resumes_from_a_checkpoint(data, tmp_path):
    X, _, sd = data
    whole = ISTNAdapter(**TINY).fit(X, sample_domain=sd)
    ISTNAdapter(**{**TINY, "max_epochs": 1}, checkpoint_dir=tmp_path).fit(X, sample_domain=sd)
    resumed = ISTNAdapter(**TINY, checkpoint_dir=tmp_path).fit(X, sample_domain=sd)
    np.testing.assert_array_equal(resumed.transform(X, sample_domain=sd),
                                  whole.transform(X, sample_domain=sd))


def test_cross_val_score_leaves_one_of_three_sites_out(data):
    X, y, sd = data
    source = sd > 0
    names = np.array(["a", "b", "c"])[sd[source] - 1]
    X2, y2, sd2, codes = expand_sites(X[source], y[source], names)
    assert codes == {"a": 1, "b": 2, "c": 3}
    pipe = Pipeline([("istn", ISTNAdapter(**TINY)),
                     ("task", TaskClassifier(nf=2, max_epochs=1, batch_size=8, random_state=0))])
    with sklearn.config_context(enable_metadata_routing=True):
        scores = cross_val_score(pipe, X2, y2, cv=LeaveOneSiteOut(),
                                 params={"sample_domain": sd2})
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))


def test_a_fresh_conditioned_istn_is_the_plain_istn():
    torch.manual_seed(0)
    istn = ISTN(ImageTransformerNetwork(2, 1, (16, 16), nf=2),
                AffineSTN(2, 1, (16, 16), nf=2)).eval()
    conditioned = SiteConditionedISTN(istn, n_sites=3).eval()
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    with torch.no_grad():   # zero-initialised FiLM: every site starts as the identity modulation
        torch.testing.assert_close(conditioned(x, torch.tensor([0, 1, 2, 1])), istn(x))

    class PlainSTN(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 2, *x.shape[2:])

    with pytest.raises(ValueError, match=r"cannot be conditioned.*independent"):
        SiteConditionedISTN(ISTN(None, PlainSTN()), n_sites=2)


# simulate_brain_sites(n_per_site=2, shape=12, random_state=0, travelling_subjects=1) and
# make_brain_sites(..., n_per_site=2, shape=12, random_state=3, travelling_subjects=1)'s
# manifest, computed before n_sites existed.
BRAIN_REFERENCE = "9749b7b4515d53f9"
MANIFEST_REFERENCE = "147078ae5ba2be2d"


def test_two_brain_sites_are_unchanged(tmp_path):
    X, sex, age, site = simulate_brain_sites(n_per_site=2, shape=12, random_state=0,
                                             travelling_subjects=1)
    assert _digest(X) == BRAIN_REFERENCE and site.tolist() == [0, 0, 1, 1, 0, 1]
    assert sex.tolist() == [0, 1, 1, 0, 1, 1]
    assert age.tolist() == [52.7, 38.7, 65.4, 58.1, 55.7, 55.7]
    manifest = make_brain_sites(tmp_path, n_per_site=2, shape=12, random_state=3,
                                travelling_subjects=1)
    assert hashlib.sha256(Path(manifest).read_bytes()).hexdigest()[:16] == MANIFEST_REFERENCE


def test_three_brain_sites_with_travelling_subjects(tmp_path):
    manifest = make_brain_sites(tmp_path, n_per_site=1, shape=12, random_state=0,
                                travelling_subjects=2, n_sites=3)
    table = pd.read_csv(manifest, sep="\t")
    assert sorted(set(table["site"])) == ["camcan", "site2", "ukbb"]
    travelling = table[table["subject"].str.startswith("travel")]
    assert travelling.groupby("subject")["site"].nunique().tolist() == [3, 3]
    assert travelling.groupby("subject")["age"].nunique().tolist() == [1, 1]
    X, _, _, site = load_brain_sites(manifest)
    assert X.shape == (9, 1, 12, 12, 12) and sorted(set(site.tolist())) == [0, 1, 2]
    three = simulate_brain_sites(n_per_site=1, shape=12, random_state=0, n_sites=3)
    two = simulate_brain_sites(n_per_site=1, shape=12, random_state=0)
    np.testing.assert_array_equal(three[0][:2], two[0])   # the first two sites do not move
    assert three[3].tolist() == [0, 1, 2]
    assert np.abs(three[0][2] - three[0][1]).max() > 0
    with pytest.raises(ValueError, match="n_sites"):
        simulate_brain_sites(n_per_site=1, shape=12, n_sites=1)


def test_morpho_mnist_sites_loader():
    X, y, sd = load_morpho_mnist_sites(n_samples=4, split="test")
    assert X.shape == (16, 1, 28, 28) and len(y) == 16
    assert sd.tolist() == [1] * 4 + [2] * 4 + [3] * 4 + [-1] * 4
    with pytest.raises(ValueError, match="also a source"):
        load_morpho_mnist_sites(sources=("A", "B"), target="A")
    with pytest.raises(ValueError, match="distinct"):
        load_morpho_mnist_sites(sources=("B", "B"))
