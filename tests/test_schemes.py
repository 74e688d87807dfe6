"""Training schemes: the task model trained alongside, the joint term, batch-norm statistics."""

import numpy as np
import pytest
import torch
from sklearn.model_selection import cross_val_score

from istn_sk import ISTNAdapter, TaskClassifier
from istn_sk._synthetic import make_shifted_shapes

TINY = dict(nf=4, max_epochs=2, batch_size=16, random_state=0)


@pytest.fixture(scope="module")
def labelled():
    X, y, sd = make_shifted_shapes(32, (12, 12), shift=2.0, random_state=3)
    return X, np.where(sd > 0, y, -1), sd


def _alongside(**changes):
    return ISTNAdapter(task=TaskClassifier(nf=4, batch_size=16, random_state=0),
                       **{**TINY, "task_weight": 0.0, **changes})


def test_the_adapter_predicts_with_the_model_trained_alongside(labelled):
    X, y, sd = labelled
    adapter = _alongside().fit(X, y, sample_domain=sd)
    target = X[sd < 0]
    np.testing.assert_array_equal(adapter.predict(target), adapter.task_.predict(target))
    np.testing.assert_allclose(adapter.predict_proba(target), adapter.task_.predict_proba(target))
    # with the domains, source rows are mapped first, as a Pipeline would
    mapped = adapter.transform(X, sample_domain=sd)
    np.testing.assert_array_equal(adapter.predict(X, sample_domain=sd),
                                  adapter.task_.predict(mapped))
    truth = np.where(sd < 0, make_shifted_shapes(32, (12, 12), shift=2.0, random_state=3)[1], -1)
    rows = sd < 0
    assert adapter.score(X[rows], truth[rows]) == pytest.approx(
        np.mean(adapter.predict(X[rows]) == truth[rows]))


def test_without_a_task_model_the_adapter_does_not_predict(labelled):
    X, _, sd = labelled
    adapter = ISTNAdapter(**TINY).fit(X, sample_domain=sd)
    assert not hasattr(adapter, "predict") and not hasattr(adapter, "score")


def test_the_adapter_is_an_estimator_of_its_own_in_cross_val_score(labelled):
    X, _, sd = labelled
    truth = make_shifted_shapes(32, (12, 12), shift=2.0, random_state=3)[1]
    scores = cross_val_score(_alongside(), X, np.where(sd > 0, truth, -1),
                             cv=[(np.arange(len(X)), np.flatnonzero(sd > 0))])
    assert scores.shape == (1,) and 0 <= scores[0] <= 1


def test_the_joint_term_steers_the_istn_and_is_recorded(labelled):
    X, y, sd = labelled
    plain = _alongside().fit(X, y, sample_domain=sd)
    joint = _alongside(task_weight=1.0).fit(X, y, sample_domain=sd)
    assert "joint_loss" not in plain.history_[-1]
    losses = joint.history_[:, "joint_loss"]
    assert len(losses) == 2 and np.all(np.isfinite(losses)) and np.all(np.array(losses) > 0)
    assert not np.allclose(plain.transform(X[sd > 0]), joint.transform(X[sd > 0]))


def test_the_joint_term_never_reads_target_labels(labelled):
    X, y, sd = labelled
    permuted = y.copy()
    permuted[sd < 0] = np.random.default_rng(0).permutation([0, 1] * int((sd < 0).sum() // 2))
    first = _alongside(task_weight=1.0).fit(X, y, sample_domain=sd)
    second = _alongside(task_weight=1.0).fit(X, permuted, sample_domain=sd)
    np.testing.assert_array_equal(first.transform(X), second.transform(X))


def test_transform_uses_batch_statistics_of_the_source_domain(labelled):
    X, _, sd = labelled
    adapter = ISTNAdapter(stn=None, **{**TINY, "max_epochs": 4}).fit(X, sample_domain=sd)
    source = torch.from_numpy(X[sd > 0])
    istn = adapter.net_.module_["s2t"]
    norms = [m for m in istn.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        features = istn.itn.stem[0](source)     # the first convolution, before its norm
    np.testing.assert_allclose(norms[0].running_mean, features.mean(dim=(0, 2, 3)),
                               rtol=1e-4, atol=1e-5)


def test_weight_averages_are_what_transform_and_predict_use(labelled):
    X, y, sd = labelled
    last = _alongside(max_epochs=3, ema_decay=None).fit(X, y, sample_domain=sd)
    averaged = _alongside(max_epochs=3, ema_decay=0.9).fit(X, y, sample_domain=sd)
    # the same training (averaging only reads the weights), another set of weights at the end
    np.testing.assert_allclose(last.history_[:, "gan_loss"], averaged.history_[:, "gan_loss"])
    assert not np.allclose(last.transform(X[sd > 0]), averaged.transform(X[sd > 0]))
    shadow = averaged.net_.averages_.shadows["task"].module
    for name, weight in shadow.state_dict().items():
        if weight.is_floating_point():
            np.testing.assert_array_equal(averaged.task_.module_.state_dict()[name], weight)


def test_a_bad_ema_decay_is_named(labelled):
    X, _, sd = labelled
    with pytest.raises(ValueError, match="ema_decay must be None or a number in"):
        ISTNAdapter(ema_decay=1.0, **TINY).fit(X, sample_domain=sd)


def test_cross_val_score_over_sites_with_the_adapter_as_the_estimator():
    import sklearn

    from istn_sk.model_selection import LeaveOneSiteOut, expand_sites

    X, y, sd = make_shifted_shapes(16, (12, 12), shift=2.0, random_state=0)
    X2, y2, sd2, _ = expand_sites(X, y, np.where(sd > 0, "a", "b"))
    with sklearn.config_context(enable_metadata_routing=True):
        scores = cross_val_score(_alongside(), X2, y2, cv=LeaveOneSiteOut(),
                                 params={"sample_domain": sd2})
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))


def test_bce_on_logits_matches_bce_on_probabilities_and_keeps_its_gradient_when_saturated():
    from istn_sk._registry import get_registry

    registry = get_registry()
    on_logits = registry.get("loss", "bce_logits").factory()
    on_probabilities = registry.get("loss", "bce").factory()
    logits = torch.tensor([-3.0, 0.5, 2.0], requires_grad=True)
    labels = torch.tensor([0.02, 0.98, 0.99])
    assert on_logits(logits, labels).item() == pytest.approx(
        on_probabilities(torch.sigmoid(logits), labels).item(), rel=1e-5)
    saturated = torch.tensor([40.0], requires_grad=True)     # a discriminator sure of "real"
    target = torch.tensor([0.01])
    grad_logits, = torch.autograd.grad(on_logits(saturated, target), saturated)
    grad_probabilities, = torch.autograd.grad(
        on_probabilities(torch.sigmoid(saturated), target), saturated)
    assert grad_logits.item() == pytest.approx(0.99, abs=1e-3) and grad_probabilities.item() == 0


def test_adversarial_terms_on_logits_train_and_an_image_loss_on_logits_is_refused(labelled):
    X, _, sd = labelled
    adapter = ISTNAdapter(gan_loss="bce_logits", dis_loss="bce_logits", **TINY)
    losses = adapter.fit(X, sample_domain=sd).history_[:, "dis_loss"]
    assert np.all(np.isfinite(losses)) and 0 < losses[0] < 1.5
    with pytest.raises(ValueError, match="works on logits"):
        ISTNAdapter(idt_loss="bce_logits", **TINY).fit(X, sample_domain=sd)


def test_the_average_warms_up_so_a_short_training_is_not_its_first_weights():
    from istn_sk._weight_averaging import averaged_copy, warmed_up_decay

    assert warmed_up_decay(0.99, 0) == pytest.approx(0.1)
    assert warmed_up_decay(0.99, 50) == pytest.approx(51 / 60)
    assert warmed_up_decay(0.99, 10_000) == 0.99
    module = torch.nn.Linear(1, 1, bias=False)
    shadow = averaged_copy(module, 0.99)
    for step in range(50):
        with torch.no_grad():
            module.weight.fill_(float(step))
        shadow.update_parameters(module)
    # a fixed 0.99 would leave about 60% of the first weight (0); the warmed-up average
    # follows the recent weights
    assert 40 < shadow.module.weight.item() < 49
