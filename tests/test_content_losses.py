"""Content losses on the ITN (PatchNCE): the loss itself, its training and its errors."""

import numpy as np
import pytest
import torch

import istn_sk
from istn_sk import ISTNAdapter, PluginError, load_model, make_shifted_shapes, save_model
from istn_sk._content_losses import PatchNCELoss, build_content_losses
from istn_sk._registry import Registry, make_plugin_manager

NCE = {"content_losses": {"patch_nce": 1.0}}


@pytest.fixture(scope="module")
def data():
    return make_shifted_shapes(32, (16, 16), random_state=0)


def _features(seed, shape=((2, 4, 8, 8), (2, 8, 4, 4))):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=generator) for s in shape]


def _loss(loss, keys, queries, seed=0):
    torch.manual_seed(seed)   # the sampled positions
    return float(loss(keys, queries).detach())


def test_patch_nce_is_low_for_aligned_features_and_high_for_moved_ones():
    torch.manual_seed(0)
    loss = PatchNCELoss(1.0, (4, 8))
    keys = _features(0)
    moved = [k.flatten(2)[..., torch.randperm(k[0, 0].numel())].view_as(k) for k in keys]
    aligned, shuffled = _loss(loss, keys, keys), _loss(loss, keys, moved)
    # chance is log(n positions) averaged over the levels: (log 64 + log 16) / 2 = 3.47
    assert aligned < 0.5 * shuffled and shuffled > 3.0


def test_patch_nce_scales_with_its_weight_and_keeps_keys_out_of_the_gradient():
    torch.manual_seed(0)
    unit = PatchNCELoss(1.0, (4, 8))
    double = PatchNCELoss(2.0, (4, 8))
    double.load_state_dict(unit.state_dict())
    keys = [k.requires_grad_(True) for k in _features(0)]
    queries = [q.requires_grad_(True) for q in _features(1)]
    assert _loss(double, keys, queries) == pytest.approx(2 * _loss(unit, keys, queries))
    torch.manual_seed(0)
    unit(keys, queries).backward()
    assert all(k.grad is None for k in keys)
    assert all(q.grad is not None and q.grad.abs().sum() > 0 for q in queries)
    assert all(p.grad is not None for p in unit.parameters())


def test_patch_nce_samples_at_most_n_patches_positions_in_3d():
    keys = _features(0, ((3, 2, 4, 4, 4),))   # 64 positions

    def aligned(n_patches):
        torch.manual_seed(0)
        return _loss(PatchNCELoss(1.0, (2,), n_patches=n_patches), keys, keys)

    # two candidates are easy to tell apart; beyond the 64 positions nothing changes
    assert aligned(2) < 0.2 < 1.5 < aligned(64) == aligned(1000)


def test_an_adapter_trains_the_heads_records_the_loss_and_changes_only_the_itns_loss(data):
    X, _, sd = data
    plain = ISTNAdapter(stn="affine", nf=4, max_epochs=2, random_state=0, content_losses=None)
    plain.fit(X, sample_domain=sd)
    adapter = ISTNAdapter(stn="affine", nf=4, max_epochs=2, random_state=0, **NCE)
    adapter.fit(X, sample_domain=sd)
    content = adapter.net_.content_["s2t"][0]
    fresh = PatchNCELoss(1.0, adapter.net_.module_["s2t"].itn.encoder_channels)
    assert len(content.heads) == 2   # 16 px: the stem and one stride-2 level
    losses = adapter.history_[:, "content_loss"]
    assert len(losses) == 2 and all(0 < v < np.log(64) for v in losses)
    assert "content_loss" not in plain.history_[-1]
    assert len(plain.net_.content_) == 0
    trained = torch.cat([p.flatten() for p in content.parameters()])
    assert trained.shape == torch.cat([p.flatten() for p in fresh.parameters()]).shape
    optimised = {id(p) for group in adapter.net_.optimizer_.param_groups for p in group["params"]}
    assert all(id(p) in optimised for p in content.parameters())
    assert not np.array_equal(adapter.transform(X), plain.transform(X))


def test_cyclegan_builds_one_content_loss_per_direction(data):
    X, _, sd = data
    adapter = ISTNAdapter(stn=None, nf=4, max_epochs=1, mode="cyclegan", random_state=0, **NCE)
    adapter.fit(X, sample_domain=sd)
    assert sorted(adapter.net_.content_) == ["s2t", "t2s"]
    assert adapter.history_[-1, "content_loss"] > 0


def test_a_resumed_fit_with_a_content_loss_matches_an_uninterrupted_one(data, tmp_path):
    X, _, sd = data
    params = dict(stn="affine", nf=4, random_state=0, **NCE)
    ISTNAdapter(checkpoint_dir=tmp_path, max_epochs=2, **params).fit(X, sample_domain=sd)
    resumed = ISTNAdapter(checkpoint_dir=tmp_path, max_epochs=3, **params).fit(X, sample_domain=sd)
    uninterrupted = ISTNAdapter(max_epochs=3, **params).fit(X, sample_domain=sd)
    np.testing.assert_array_equal(resumed.transform(X), uninterrupted.transform(X))
    assert resumed.history_[:, "content_loss"] == uninterrupted.history_[:, "content_loss"]


def test_auto_is_patch_nce_with_an_itn_and_nothing_without(data):
    X, _, sd = data
    default = ISTNAdapter(stn="affine", nf=4, max_epochs=1, random_state=0).fit(X, sample_domain=sd)
    named = ISTNAdapter(stn="affine", nf=4, max_epochs=1, random_state=0,
                        content_losses="patch_nce").fit(X, sample_domain=sd)
    assert default.content_losses == "auto"
    assert isinstance(default.net_.content_["s2t"][0], PatchNCELoss)
    np.testing.assert_array_equal(default.transform(X), named.transform(X))
    stn_only = ISTNAdapter(itn=False, nf=4, max_epochs=1, random_state=0).fit(X, sample_domain=sd)
    assert len(stn_only.net_.content_) == 0 and "content_loss" not in stn_only.history_[-1]


def test_a_name_alone_is_the_loss_at_weight_one():
    (loss,) = build_content_losses("patch_nce", (4, 8))
    assert isinstance(loss, PatchNCELoss) and loss.weight == 1.0 and len(loss.heads) == 2


def test_a_model_file_keeps_the_content_losses_and_maps_as_before(data, tmp_path):
    X, _, sd = data
    adapter = ISTNAdapter(stn="affine", nf=4, max_epochs=1, random_state=0, **NCE)
    adapter.fit(X, sample_domain=sd)
    loaded = load_model(save_model(adapter, tmp_path / "adapter.pt"))
    assert loaded.content_losses == {"patch_nce": 1.0}
    np.testing.assert_array_equal(loaded.transform(X), adapter.transform(X))


@pytest.mark.parametrize(("options", "message"), [
    ({"content_losses": {"nce": 1.0}}, "unknown content_loss.*registered: patch_nce"),
    ({"content_losses": {"patch_nce": -1.0}}, r"content_losses\['patch_nce'\] must be a non-neg"),
    ({"content_losses": ["patch_nce"]}, "content_losses must be None, a content-loss name or"),
    ({"content_losses": "nce"}, "unknown content_loss.*registered: patch_nce"),
    ({"content_losses": {"patch_nce": 1.0}, "itn": False}, "with itn=False there is no ITN"),
])
def test_bad_content_losses_are_one_clear_error(data, options, message):
    X, _, sd = data
    with pytest.raises(ValueError, match=message):
        ISTNAdapter(stn="affine", max_epochs=1, **options).fit(X, sample_domain=sd)


@pytest.mark.parametrize("multi_source", ["conditioned", "independent"])
def test_several_source_sites_share_one_content_loss_through_their_sites_itns(data, multi_source):
    X, _, sd = data
    sites = np.where(sd > 0, 1 + np.arange(len(sd)) % 2, sd)
    adapter = ISTNAdapter(nf=4, max_epochs=1, multi_source=multi_source, random_state=0, **NCE)
    adapter.fit(X, sample_domain=sites)
    (content,) = adapter.net_.content_["s2t"]
    assert len(content.heads) == 2 and adapter.history_[-1, "content_loss"] > 0
    istn = adapter.net_.module_["s2t"]
    index = torch.zeros(4, dtype=torch.long)
    with torch.no_grad():
        features = istn.encode(torch.as_tensor(X[:4]), index)
    assert [f.shape[1] for f in features] == list(istn.encoder_channels) == [4, 8]


class _MeanFeatureGap:
    """A third-party content loss: the squared gap between mean features."""

    @istn_sk.hookimpl
    def istn_sk_register_content_losses(self, register):
        register.add("mean_gap", self.factory, description="gap between mean features")

    @staticmethod
    def factory(weight, channels):
        class MeanGap(torch.nn.Module):
            def forward(self, source_features, mapped_features):
                return weight * sum((s.mean() - m.mean()) ** 2
                                    for s, m in zip(source_features, mapped_features, strict=True))
        return MeanGap()


def test_a_plugins_content_loss_is_built_with_the_itns_channels(monkeypatch):
    manager = make_plugin_manager(autoload=False)
    manager.register(_MeanFeatureGap(), name="mean-gap")
    monkeypatch.setattr(istn_sk._registry, "get_registry", lambda refresh=False: Registry(manager))
    (loss,) = build_content_losses({"mean_gap": 3.0}, (4, 8))
    features = _features(0)
    shifted = [f + 1.0 for f in features]
    assert float(loss(features, shifted)) == pytest.approx(3.0 * 2)
    with pytest.raises(PluginError, match="registered: mean_gap, patch_nce"):
        build_content_losses({"gap": 1.0}, (4,))
