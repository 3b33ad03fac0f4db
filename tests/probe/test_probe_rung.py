"""The linear_probe rung as the engine runs it (cached features of the real all-MiniLM-L6-v2, solved) reaches
what scikit-learn's LogisticRegression with a cross-validated C reaches on the same features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DataLoader

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


def test_a_taggers_solved_probe_matches_sklearn_on_the_same_token_features(tmp_path):
    """Token classification: the probe is a logistic regression on each word's first sub-token (the stdlib
    docstrings' CODE / NUM tags); scikit-learn on the same token features reaches the same word accuracy."""
    from peft_ladder.features import penultimate_features

    config = load_config(
        "recipes/tiny/minilm_1layer.yaml",
        [
            f"output_dir={tmp_path / 'probe'}",
            "backbone.model_kwargs.num_hidden_layers=2",
            "data.text_column=words",
            "data.label_column=tags",
            "data.max_length=96",
            "data.max_samples={train: 160, validation: 120, test: 8}",
        ],
    )
    engine = Engine(config)
    results = engine.run()
    assert results.task["name"] == "token_classification" and results.solver["converged"]
    backbone, model = engine.adapted.backbone, engine.adapted.model
    features = {
        split: penultimate_features(
            backbone,
            model,
            DataLoader(engine.encoded.datasets[split], batch_size=32, collate_fn=engine.encoded.collate),
        )
        for split in ("train", "validation")
    }
    (x_train, y_train), (x_val, y_val) = features["train"], features["validation"]
    reference = make_pipeline(
        StandardScaler(),
        LogisticRegressionCV(
            Cs=np.logspace(-4, 4, 9),
            cv=StratifiedKFold(5, shuffle=True, random_state=0),
            scoring="neg_log_loss",
            max_iter=5000,
        ),
    ).fit(x_train.numpy(), y_train.numpy())
    sklearn_accuracy = float((reference.predict(x_val.numpy()) == y_val.numpy()).mean())
    with torch.no_grad():  # the solved head on the same features
        ours = float((model.classifier(x_val).argmax(-1) == y_val).float().mean())
    assert abs(ours - sklearn_accuracy) <= 0.01, (ours, sklearn_accuracy)
    # The run's own word accuracy also counts the few words past max_length (scored as O): within a point of it.
    assert results.splits["validation"].metrics["token_accuracy"] == pytest.approx(ours, abs=0.01)
