"""scikit-learn's own estimator checks on every estimator class the pipeline fits and stores.

What does not pass is listed with the reason, the way scikit-learn's ``expected_failed_checks``
asks; a check listed here that starts passing fails the test (xfail is strict).

Two classes are left out on purpose, because their ``fit`` is not ``fit(X, y)`` by design:
``StackedEnsemble.fit`` takes the base models' out-of-fold predictions (never the features:
feeding it in-sample predictions is the leak it exists to prevent) and ``DeepLOBClassifier.fit``
takes the snapshot matrix with the positions of the training windows. And
``OFIRegressionClassifier`` predicts the three fixed classes of a price move (down, flat, up)
from a regression of the returns on order flow: the checks' arbitrary labels ("one", "two")
have no order to threshold. Their tests are in ``test_stacking.py`` and
``tests/unit/microstructure/test_lob_models.py``.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from models.learning.double_ensemble import DoubleEnsembleRegressor
from models.learning.estimators import ColumnSignal
from models.learning.nets import TorchRegressor

# Weighted fits are not repeated rows for these learners: LightGBM's min_child_samples and
# its histogram bins count rows, not weight; the net draws mini-batches of rows
NOT_REPEATS = "a weight is not a repeated row for this learner (see the module docstring)"
EXPECTED = {
    "DoubleEnsembleRegressor": {"check_sample_weight_equivalence_on_dense_data": NOT_REPEATS},
    "TorchRegressor": {"check_sample_weight_equivalence_on_dense_data": NOT_REPEATS},
}

ESTIMATORS = [
    ColumnSignal(),
    ColumnSignal(sign=-1.0),
    # small and lightly regularised: the defaults (Qlib's, for a million noisy rows) grow no
    # tree on the checks' hundred rows
    DoubleEnsembleRegressor(
        num_models=3,
        epochs=20,
        min_child_samples=5,
        reg_alpha=0.0,
        reg_lambda=0.0,
        fs_max_rows=50,
        random_state=0,
        n_jobs=1,
    ),
    TorchRegressor(hidden=16, layers=1, epochs=40, batch_size=64, lr=1e-2, random_state=0),
]


@parametrize_with_checks(
    ESTIMATORS, expected_failed_checks=lambda est: EXPECTED.get(type(est).__name__, {})
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
