"""The committed final model, re-measured by a loop that shares no code with the trainer.

Only ``build_model`` and the data loader are borrowed; normalisation, batching, precision
(fp32) and scoring are written out here, from what the JSON record says.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from course_lib.data import load_cifar10
from course_lib.models import build_model
from course_lib.train import plan_record
from tests.conftest import requires_cifar

CHECKPOINT = Path(__file__).resolve().parents[1] / "data" / "checkpoints" / "final_dilated"
published = pytest.mark.skipif(
    not CHECKPOINT.with_suffix(".pt").exists(), reason="no committed checkpoint yet"
)


@published
def test_record_is_complete_and_reports_the_final_epoch():
    record = json.loads(CHECKPOINT.with_suffix(".json").read_text())
    history = record["history"]
    assert record["config"]["model"] == "dilated"
    assert len(history) == record["config"]["epochs"] <= 15
    assert record["final_test_acc"] == history[-1]["test_acc"]
    assert record["parameters"] < 200_000
    assert {"mean", "std"} == set(record["normalize"])
    assert {"torch", "albumentations", "device"} <= set(record["environment"])
    assert record["plan"] == plan_record(build_model("dilated"))


@published
def test_committed_run_reaches_85_percent_at_the_final_epoch():
    record = json.loads(CHECKPOINT.with_suffix(".json").read_text())
    assert record["final_test_acc"] >= 0.85


@published
@requires_cifar
def test_independent_fp32_loop_reproduces_the_recorded_final_accuracy():
    record = json.loads(CHECKPOINT.with_suffix(".json").read_text())
    model = build_model(record["config"]["model"])
    model.load_state_dict(torch.load(CHECKPOINT.with_suffix(".pt"), weights_only=True))
    model.eval()
    data = load_cifar10(verbose=False)
    mean = np.array(record["normalize"]["mean"], dtype=np.float32)
    std = np.array(record["normalize"]["std"], dtype=np.float32)
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(data.y_test), 1000):
            x = (data.x_test[start : start + 1000].astype(np.float32) / 255 - mean) / std
            logits = model(torch.from_numpy(x).permute(0, 3, 1, 2))
            correct += int((logits.argmax(1).numpy() == data.y_test[start : start + 1000]).sum())
    accuracy = correct / len(data.y_test)
    # the trainer measured in bf16; fp32 may flip a handful of the 10,000 predictions
    assert accuracy == pytest.approx(record["final_test_acc"], abs=0.003)
