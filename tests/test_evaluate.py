import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_lib.evaluate import Evaluation, predict


def test_evaluation_reads_predictions_confidence_and_accuracy_from_the_softmax():
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.7, 0.3]], dtype=np.float32)
    ev = Evaluation(probs, np.array([0, 0, 1, 1]))
    assert ev.preds.tolist() == [0, 1, 1, 0]
    assert ev.confidence.tolist() == pytest.approx([0.9, 0.6, 0.8, 0.7])
    assert ev.accuracy == 0.5


def test_flip_tta_changes_nothing_for_a_mirror_symmetric_model():
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4))
    data = TensorDataset(torch.randn(16, 3, 8, 8), torch.randint(0, 4, (16,)))
    loader = DataLoader(data, batch_size=5)
    plain = predict(model, loader, device=torch.device("cpu"))
    tta = predict(model, loader, tta=True, device=torch.device("cpu"))
    assert len(tta.labels) == 16
    np.testing.assert_allclose(plain.probs, tta.probs, atol=1e-6)


def test_flip_tta_averages_the_softmax_of_each_image_and_its_mirror_image():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    x = torch.randn(6, 3, 4, 4)
    loader = DataLoader(TensorDataset(x, torch.zeros(6, dtype=torch.long)), batch_size=4)
    tta = predict(model, loader, tta=True, device=torch.device("cpu"))
    with torch.no_grad():
        expected = (model(x).softmax(1) + model(x.flip(3)).softmax(1)) / 2
    np.testing.assert_allclose(tta.probs, expected.numpy(), atol=1e-2)  # bf16 autocast on CPU


def test_published_checkpoint_fails_clearly_when_absent_and_offline(tmp_path, monkeypatch):
    import urllib.request

    from course_lib.evaluate import published_checkpoint

    def offline(url, filename):
        raise OSError("no network")

    monkeypatch.setattr(urllib.request, "urlretrieve", offline)
    with pytest.raises(FileNotFoundError, match="could not be downloaded.*make train"):
        published_checkpoint(tmp_path)
    assert not list(tmp_path.rglob("*.part"))
