"""The linear_probe rung as the engine runs it (cached features of the real all-MiniLM-L6-v2, solved) reaches
what scikit-learn's LogisticRegression with a cross-validated C reaches on the same features."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from peft_ladder.config import load_config
from peft_ladder.engine import Engine

pytestmark = pytest.mark.slow


def test_solved_probe_matches_sklearn_on_the_cached_features(tmp_path):
    config = load_config(
        "recipes/tiny/minilm_1layer.yaml",
        [
            f"output_dir={tmp_path / 'probe'}",
            "backbone.model_kwargs.num_hidden_layers=6",  # the whole checkpoint, mean-pooled as it declares
            "data.max_samples={train: 400, validation: 312, test: 8}",
        ],
    )
    engine = Engine(config)
    results = engine.run()
    assert results.cache.used and results.solver["converged"] and results.steps == 0
    train, validation = engine.cached.datasets["train"].tensors, engine.cached.datasets["validation"].tensors
    x_train, y_train = train["activations"].numpy(), train["labels"].numpy()
    x_val, y_val = validation["activations"].numpy(), validation["labels"].numpy()
    reference = make_pipeline(
        StandardScaler(),
        LogisticRegressionCV(
            Cs=np.logspace(-4, 4, 17),
            cv=StratifiedKFold(5, shuffle=True, random_state=0),
            scoring="neg_log_loss",
            max_iter=5000,
        ),
    ).fit(x_train, y_train)
    sklearn_accuracy = float((reference.predict(x_val) == y_val).mean())
    ours = results.splits["validation"].metrics["accuracy"]
    assert abs(ours - sklearn_accuracy) <= 0.01, (ours, sklearn_accuracy)
    # The predictions kept for the ladder are the ones the metric was computed from.
    preds, labels = engine.predictions["validation"]
    assert np.array_equal(labels, y_val) and float((np.asarray(preds) == y_val).mean()) == ours
