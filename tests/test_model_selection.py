"""Cross-site evaluation, label-free scorers, skada interop and scale-out with Dask."""

import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest
import sklearn
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline

from istn_sk import ISTNAdapter, TaskClassifier, make_shifted_shapes
from istn_sk.model_selection import LeaveOneSiteOut, expand_sites
from istn_sk.scoring import DomainConfusionScorer, PredictionEntropyScorer

TASK = dict(nf=4, max_epochs=2, batch_size=16, random_state=0)
ADAPTER = dict(nf=4, max_epochs=2, batch_size=16, random_state=0)


@pytest.fixture(scope="module")
def two_sites():
    X, y, sd = make_shifted_shapes(24, (12, 12), random_state=0)
    return X, y, np.where(sd > 0, "cam-can", "ukbb")


@pytest.fixture
def routing():
    with sklearn.config_context(enable_metadata_routing=True):
        yield


def _pipeline():
    return Pipeline([("istn", ISTNAdapter(**ADAPTER)), ("task", TaskClassifier(**TASK))])


def test_plain_site_labels_hold_out_one_site_per_fold(two_sites):
    X, y, sites = two_sites
    folds = list(LeaveOneSiteOut().split(X, y, groups=sites))
    assert LeaveOneSiteOut().get_n_splits(groups=sites) == 2 and len(folds) == 2
    for train, test in folds:
        assert len(set(sites[test])) == 1 and sites[test][0] not in set(sites[train])
        assert len(train) + len(test) == len(X)


def test_expanded_sites_train_on_sources_plus_the_unlabelled_held_out_site(two_sites):
    X, y, sites = two_sites
    X2, y2, sd, codes = expand_sites(X, y, sites)
    assert codes == {"cam-can": 1, "ukbb": 2}
    assert X2.shape[0] == 2 * len(X) and sorted(set(sd)) == [-2, -1, 1, 2]
    for train, test in LeaveOneSiteOut().split(X2, y2, sample_domain=sd):
        held_out = -sd[test][0]
        assert np.all(sd[test] == -held_out)
        assert set(sd[train]) == {-held_out, 3 - held_out}
    train, test = next(LeaveOneSiteOut(target_test_size=0.25, random_state=0)
                       .split(X2, y2, sample_domain=sd))
    assert len(np.intersect1d(train, test)) == 0 and len(test) == 6


def test_splitter_errors_are_named(two_sites):
    X, y, sites = two_sites
    with pytest.raises(ValueError, match="needs site labels"):
        list(LeaveOneSiteOut().split(X, y))
    with pytest.raises(ValueError, match="at least 2 sites"):
        list(LeaveOneSiteOut().split(X, y, groups=np.full(len(X), "a")))
    with pytest.raises(ValueError, match="use expand_sites"):
        list(LeaveOneSiteOut().split(X, y, sample_domain=np.where(sites == "ukbb", -2, 1)))


def test_cross_val_score_over_sites_ignores_target_labels(two_sites, routing):
    X, y, sites = two_sites
    X2, y2, sd, _ = expand_sites(X, y, sites)
    scores = cross_val_score(_pipeline(), X2, y2, cv=LeaveOneSiteOut(),
                             params={"sample_domain": sd})
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))
    # labels of target rows inside a training fold must not matter: permute them
    permuted = y2.copy()
    target_rows = sd < 0
    permuted[target_rows] = np.random.default_rng(0).permutation(y2[target_rows])
    for (train, test) in LeaveOneSiteOut().split(X2, y2, sample_domain=sd):
        original = _pipeline().fit(X2[train], y2[train], sample_domain=sd[train])
        shuffled = _pipeline().fit(X2[train], permuted[train], sample_domain=sd[train])
        np.testing.assert_array_equal(
            original.predict_proba(X2[test], sample_domain=sd[test]),
            shuffled.predict_proba(X2[test], sample_domain=sd[test]))


def test_domain_confusion_ranks_a_good_adapter_above_a_broken_one(routing):
    # Measured (3 seeds x 1 and 2 threads): a trained adapter scores 0.04-0.20 (means 0.080
    # and 0.087), an untrained one (lr=0, the identity) 0.000 in every case: a linear domain
    # classifier separates S from T perfectly, and S2T from T almost so. With the current
    # defaults (identity term on the ITN, coordinates for the discriminator) the same fits
    # map closer to T pixel for pixel (|S2T - T| / |S - T| 0.17-0.26 vs 0.23-0.26) but score
    # 0.00-0.10 here: too close to the identity's 0 for a ranking test, so this test keeps
    # the settings its margin was measured with (no content loss either).
    X, _, sd = make_shifted_shapes(100, (20, 20), shift=3.0, random_state=0)
    scorer = DomainConfusionScorer()
    measured = {"nf": 8, "identity_on": "istn", "dis_coordinates": False, "content_losses": None}
    good, broken = [], []
    for seed in range(3):
        fitted = ISTNAdapter(**measured, max_epochs=10, random_state=seed).fit(
            X, sample_domain=sd)
        identity = ISTNAdapter(**measured, max_epochs=1, lr=0.0, random_state=seed).fit(
            X, sample_domain=sd)
        good.append(scorer(fitted, X, sample_domain=sd))
        broken.append(scorer(identity, X, sample_domain=sd))
    assert max(broken) < 0.02 and min(good) > max(broken), (good, broken)
    assert np.mean(good) > 0.03, good
    search = GridSearchCV(ISTNAdapter(**measured, max_epochs=10, random_state=0),
                          {"lr": [0.0, 1e-3]},
                          scoring=scorer, cv=[(np.arange(len(X)), np.arange(len(X)))])
    search.fit(X, sample_domain=sd)
    assert search.best_params_ == {"lr": 1e-3}


def test_prediction_entropy_scores_confidence_on_raw_target_rows(two_sites):
    X, y, sites = two_sites
    masked = np.where(sites == "cam-can", y, -1)
    pipe = _pipeline().fit(X, masked)
    score = PredictionEntropyScorer()(pipe, X, masked)
    proba = pipe[-1].predict_proba(X[masked == -1])
    assert score == pytest.approx(np.mean(proba * np.log(proba + 1e-7)))
    assert -np.log(3) / 3 <= score <= 0


def test_skada_leave_one_domain_out_runs_on_our_pipeline():
    # skada switches metadata routing on globally at import: keep it in its own process
    code = textwrap.dedent("""
        import numpy as np
        import skada
        from skada.model_selection import LeaveOneDomainOut
        from sklearn.model_selection import cross_val_score
        from sklearn.pipeline import Pipeline
        from istn_sk import ISTNAdapter, TaskClassifier, make_shifted_shapes
        from istn_sk.model_selection import expand_sites

        X, y, sd = make_shifted_shapes(16, (12, 12), random_state=0)
        X2, y2, sd2, _ = expand_sites(X, y, np.where(sd > 0, "a", "b"))
        pipe = Pipeline([("istn", ISTNAdapter(nf=2, max_epochs=1, random_state=0)),
                         ("task", TaskClassifier(nf=2, max_epochs=1, random_state=0))])
        cv = LeaveOneDomainOut(max_n_splits=2, test_size=0.3, random_state=0)
        scores = cross_val_score(pipe, X2, y2, cv=cv, params={"sample_domain": sd2})
        print(len(scores), bool(np.all((scores >= 0) & (scores <= 1))))
    """)
    # run outside the checkout, so the installed package is imported, not the source folder
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, cwd=tempfile.gettempdir())
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["2", "True"]


def test_grid_search_runs_on_a_dask_local_cluster(two_sites):
    distributed = pytest.importorskip("distributed")
    import joblib

    X, y, sites = two_sites
    masked = np.where(sites == "cam-can", y, -1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster), joblib.parallel_backend("dask"):
        search = GridSearchCV(_pipeline(), {"istn__lr": [1e-3, 2e-3]}, cv=2, n_jobs=2,
                              scoring="accuracy").fit(X, masked)
    assert set(search.cv_results_["params"][0]) == {"istn__lr"}
    local = _pipeline().set_params(istn__lr=search.best_params_["istn__lr"]).fit(X, masked)
    np.testing.assert_array_equal(search.best_estimator_.predict(X), local.predict(X))
