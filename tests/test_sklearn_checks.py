"""scikit-learn's common estimator checks on a tiny ISTNAdapter and the task estimators.

The checks that fit feed 2-D arrays of a few features. Without
``image_shape``, a 2-D ``X`` is refused (its rows are flattened images of
unknown shape), and no single ``image_shape`` fits every check's width, so
those checks are expected to fail for that reason. The adapter's checks run
twice: on ISTNAdapter itself, whose fitting checks would also be refused
because the check's fully labelled ``y`` marks no target row, and on the
same estimator told the domains the way a pipeline tells it
(``sample_domain`` alternating source/target rows).
"""

import numpy as np
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import _num_samples

from istn_sk import ISTNAdapter, TaskClassifier, TaskRegressor

FLAT_ROWS = ("the check fits on 2-D arrays (flattened rows), which need image_shape=; the "
             "checks' feature counts vary, so no one image_shape fits")
NO_TARGET = "fit needs target rows; the check's y marks none (no -1, NaN or sample_domain)"
NEEDS_TWO_ROWS = "one row cannot hold both a source and a target image"

FITTING_CHECKS = (
    "check_dict_unchanged",
    "check_dont_overwrite_parameters",
    "check_dtype_object",
    "check_estimators_dtypes",
    "check_estimators_fit_returns_self",
    "check_estimators_nan_inf",
    "check_estimators_overwrite_params",
    "check_estimators_pickle",
    "check_estimators_pickle(readonly_memmap=True)",
    "check_f_contiguous_array_estimator",
    "check_fit2d_1feature",
    "check_fit2d_predict1d",
    "check_fit_check_is_fitted",
    "check_fit_idempotent",
    "check_fit_score_takes_y",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_n_features_in",
    "check_n_features_in_after_fitting",
    "check_pipeline_consistency",
    "check_positive_only_tag_during_fit",
    "check_readonly_memmap_input",
)
TRANSFORMER_CHECKS = (
    "check_transformer_data_not_an_array",
    "check_transformer_general",
    "check_transformer_general(readonly_memmap=True)",
    "check_transformer_preserve_dtypes",
)
SUPERVISED_CHECKS = (
    "check_estimators_partial_fit_n_features",
    "check_fit2d_1sample",
    "check_requires_y_none",
    "check_supervised_y_2d",
)
CLASSIFIER_CHECKS = (
    "check_classifier_data_not_an_array",
    "check_classifiers_one_label",
    "check_classifiers_one_label_sample_weights",
    "check_classifiers_regression_target",
)
REGRESSOR_CHECKS = (
    "check_regressor_data_not_an_array",
    "check_regressor_multioutput",
    "check_regressors_int",
    "check_regressors_no_decision_function",
)

ADAPTER_FITTING_CHECKS = (*FITTING_CHECKS, *TRANSFORMER_CHECKS)
EXPECTED_FAILURES = {check: f"{FLAT_ROWS}; {NO_TARGET}"
                     for check in (*ADAPTER_FITTING_CHECKS, "check_fit2d_1sample")}
DOMAINS_EXPECTED_FAILURES = {**dict.fromkeys(ADAPTER_FITTING_CHECKS, FLAT_ROWS),
                             "check_fit2d_1sample": f"{FLAT_ROWS}; {NEEDS_TWO_ROWS}"}

TINY = dict(nf=2, max_epochs=1, batch_size=8, random_state=0)


class AlternatingDomainsAdapter(ISTNAdapter):
    """ISTNAdapter whose ``fit`` marks even rows source and odd rows target."""

    def fit(self, X, y=None, sample_domain=None):
        return super().fit(X, sample_domain=np.where(np.arange(_num_samples(X)) % 2, -2, 1))


@parametrize_with_checks(
    [ISTNAdapter(**TINY)],
    expected_failed_checks=lambda estimator: EXPECTED_FAILURES,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@parametrize_with_checks(
    [AlternatingDomainsAdapter(**TINY)],
    expected_failed_checks=lambda estimator: DOMAINS_EXPECTED_FAILURES,
)
def test_sklearn_compatible_with_domains(estimator, check):
    check(estimator)


TASK_EXPECTED_FAILURES = {
    **dict.fromkeys((*FITTING_CHECKS, *SUPERVISED_CHECKS), FLAT_ROWS),
    "check_no_attributes_set_in_init":
        "skorch's NeuralNet.__init__ sets history_, initialized_ and virtual_params_",
    "check_set_params":
        "skorch lists its private set _params_to_validate among the parameters; the check "
        "overwrites it with a float",
    "check_classifiers_train":
        f"{FLAT_ROWS}; besides, it needs >= 0.83 accuracy, and the 1-epoch nf=2 network keeps "
        "this suite fast (accuracy is asserted in test_task.py)",
    "check_regressors_train":
        f"{FLAT_ROWS}; besides, it needs R^2 > 0.5, and the 1-epoch nf=2 network keeps this "
        "suite fast (learning is asserted in test_task.py)",
    "check_classifiers_classes":
        f"{FLAT_ROWS}; besides, the label -1 marks an unlabelled target row (skada's "
        "convention), so labels {-1, 1} leave one class",
}
CLASSIFIER_EXPECTED_FAILURES = {**TASK_EXPECTED_FAILURES,
                                **dict.fromkeys(CLASSIFIER_CHECKS, FLAT_ROWS)}
REGRESSOR_EXPECTED_FAILURES = {**TASK_EXPECTED_FAILURES,
                               **dict.fromkeys(REGRESSOR_CHECKS, FLAT_ROWS)}


@parametrize_with_checks(
    [TaskClassifier(nf=2, max_epochs=1, batch_size=8, random_state=0),
     TaskRegressor(nf=2, max_epochs=1, batch_size=8, random_state=0)],
    expected_failed_checks=lambda estimator: (
        CLASSIFIER_EXPECTED_FAILURES if isinstance(estimator, TaskClassifier)
        else REGRESSOR_EXPECTED_FAILURES),
)
def test_task_estimators_are_sklearn_compatible(estimator, check):
    check(estimator)
