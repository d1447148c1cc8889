import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_lib.evaluate import Evaluation, confusion_matrix, most_confused_pairs, predict


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    cm = confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]


def test_confusion_matrix_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="differ in shape"):
        confusion_matrix(np.array([0, 1]), np.array([0]), 2)


def test_most_confused_pairs_skips_the_diagonal_and_sorts_by_count():
    cm = np.array([[50, 2, 9], [1, 40, 0], [3, 7, 60]])
    assert most_confused_pairs(cm, ["a", "b", "c"], k=2) == [("a", "c", 9), ("c", "b", 7)]


def test_evaluation_accuracy_per_class_and_most_confident_mistakes_first():
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.7, 0.3]], dtype=np.float32)
    ev = Evaluation(probs, np.array([0, 0, 1, 1]))
    assert ev.accuracy == 0.5
    assert ev.per_class_accuracy.tolist() == [0.5, 0.5]
    assert ev.misclassified().tolist() == [3, 1]


def test_flip_tta_changes_nothing_for_a_mirror_symmetric_model():
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4))
    data = TensorDataset(torch.randn(16, 3, 8, 8), torch.randint(0, 4, (16,)))
    loader = DataLoader(data, batch_size=5)
    plain = predict(model, loader, device=torch.device("cpu"))
    tta = predict(model, loader, tta=True, device=torch.device("cpu"))
    assert tta.tta and len(tta.labels) == 16
    np.testing.assert_allclose(plain.probs, tta.probs, atol=1e-6)


def test_published_checkpoint_fails_clearly_when_absent_and_offline(tmp_path, monkeypatch):
    import urllib.request

    from course_lib.evaluate import published_checkpoint

    def offline(url, filename):
        raise OSError("no network")

    monkeypatch.setattr(urllib.request, "urlretrieve", offline)
    with pytest.raises(FileNotFoundError, match="could not be downloaded.*make train"):
        published_checkpoint(tmp_path)
    assert not list(tmp_path.rglob("*.part"))
