"""PredictionEntropyScorer is skada's PredictionEntropyScorer, applied to raw target rows."""

import json
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

from istn_sk.scoring import PredictionEntropyScorer

# one row is certain (zeros in it), one undecided, one in between; the last two rows are source
PROBABILITIES = [[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.7, 0.2, 0.1]]
DOMAINS = [-2, -2, -2, 1, 1]
SETTINGS = [dict(), dict(reduction="sum"), dict(greater_is_better=True),
            dict(reduction="none")]


class FixedProbabilities:
    """A stand-in task model predicting PROBABILITIES for the target rows it is given."""

    def predict_proba(self, X, **_):
        assert len(X) == len(PROBABILITIES)
        return np.array(PROBABILITIES)


SKADA = textwrap.dedent("""
    import json, sys
    import numpy as np
    from skada.metrics import PredictionEntropyScorer

    probabilities, domains, settings = json.loads(sys.argv[1])

    class FixedProbabilities:
        def predict_proba(self, X, **_):
            return np.array(probabilities)

    X = np.zeros((len(domains), 4))
    y = np.zeros(len(domains))
    scores = [np.asarray(PredictionEntropyScorer(**s)(FixedProbabilities(), X, y,
                                                       sample_domain=np.array(domains))).tolist()
              for s in settings]
    print(json.dumps(scores))
""")


@pytest.fixture(scope="module")
def skada_scores():
    # skada switches metadata routing on globally at import: keep it in its own process,
    # started outside the checkout so the installed packages are imported
    result = subprocess.run([sys.executable, "-c", SKADA,
                             json.dumps([PROBABILITIES, DOMAINS, SETTINGS])],
                            capture_output=True, text=True, cwd=tempfile.gettempdir(),
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("index", range(len(SETTINGS)))
def test_scores_match_skada(skada_scores, index):
    ours = PredictionEntropyScorer(**SETTINGS[index])(
        FixedProbabilities(), np.zeros((len(DOMAINS), 4)), sample_domain=np.array(DOMAINS))
    np.testing.assert_allclose(ours, skada_scores[index], rtol=1e-12)


def test_the_default_is_a_negative_mean_entropy_over_rows_and_classes():
    p = np.array(PROBABILITIES)
    score = PredictionEntropyScorer()(FixedProbabilities(), np.zeros((5, 4)),
                                      sample_domain=np.array(DOMAINS))
    assert score == pytest.approx(np.mean(p * np.log(p + 1e-7)))
    assert -np.log(3) / 3 <= score < 0


def test_an_unknown_reduction_is_refused():
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none'"):
        PredictionEntropyScorer(reduction="median")
