"""What each candidate plan of the final model costs: parameters, multiply-adds, receptive
field, and the wall time of one training step (the trainer's ``train_step``: bf16 autocast,
channels_last, dilated depthwise convs in the precision ``device.prepare`` picks).

    python benchmarks/plan_cost.py [NAME ...] [--batch-size 256] [--repeats 10]

NAME is a probe of ``architecture_probes.py`` (default: all). "epoch s" is the step time times
the steps in one epoch of the 50,000 training images: compute only, no data loading or test pass.
Multiply-adds, not the map sizes, are what the sweep was planned on; this table shows why the
step time follows the maps after C1 instead: the dilated depthwise convs at 24-28 px cost far
more time per multiply-add than full convs (see ``precision_per_layer.py``).

Measured on the 2-core AMD EPYC CPU (avx512_bf16; torch 2.14.1, 2 threads, nothing else
running), batch 256; results/plan_cost_b256.json keeps each run as its own entry. The run of
every plan (``python benchmarks/plan_cost.py``):

    plan               params  M mult-adds  RF  step ms  epoch s
    halving_old_final  193,786        45.7  51      311       61
    strided            193,786        45.7  93      390       77
    c1deep             186,330        59.3  59      417       82
    maxpool            193,786        61.9 108      419       82
    mid                193,786        82.4  47      595      117
    mid_c1deep         186,330        88.8  55      794      156
    gentle             193,786        86.2  51      820      161
    mid_end8           193,786        90.0  47      825      162
    trimming           193,786       118.3  47     1069      209

Later runs: ``plan_cost.py mid_rf63 mid_rf75`` 572 and 645 ms (82.4M multiply-adds each, RF
63 and 75); ``plan_cost.py small mid`` 481 ms for small (63.2M, RF 47) and 682 ms for mid. mid
took 595 ms in the first run: the machine's speed drifts by 10-15% between sessions, so
compare rows within one run.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from _common import BATCH_SIZE, RESULTS, machine, median_seconds
from architecture_probes import PROBES

from course_lib.device import default_device, grad_scaler, prepare, to_device
from course_lib.models import count_parameters, summary
from course_lib.receptive_field import receptive_field
from course_lib.train import TrainConfig, make_optimizer, train_step

ABOUT = ("One entry per run of plan_cost.py; step times drift 10-15% between sessions on the "
         "2-core CPU, so compare rows within a run. 'recorded_in': the commit that first held "
         "the rows of a run made before each run had its own entry.")
TRAIN_IMAGES = 50_000
WARMUP_STEPS = 3  # the first steps of a new network run slower (kernels chosen, memory grown)


def plan_cost(name: str, batch_size: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = PROBES[name]()
    cost = {
        "parameters": count_parameters(model),
        "mult_adds_M": round(summary(model).total_mult_adds / 1e6, 1),
        "receptive_field": receptive_field(model),
    }
    device = default_device()
    model = prepare(model, device).train()
    cfg = TrainConfig(batch_size=batch_size)
    opt, scaler, generator = make_optimizer(model, cfg), grad_scaler(device), torch.Generator()
    x = to_device(torch.randn(batch_size, 3, 32, 32), device)
    y = torch.randint(0, 10, (batch_size,), device=device)
    def one_step():
        return train_step(model, x, y, cfg, opt, scaler, generator)

    for _ in range(WARMUP_STEPS):
        one_step()
    step = median_seconds(one_step, repeats)
    steps = math.ceil(TRAIN_IMAGES / batch_size)
    return {**cost, "step_ms": round(1000 * step), "epoch_s": round(step * steps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # argparse checks an empty nargs="*" list against the choices too: [] must be one of them
    parser.add_argument("names", nargs="*", choices=[[], *sorted(PROBES)], default=[])
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    rows = {}
    print(f"{'plan':18} {'params':>8} {'M mult-adds':>11} {'RF':>3} {'step ms':>8} {'epoch s':>8}")
    for name in args.names or sorted(PROBES):
        c = rows[name] = plan_cost(name, args.batch_size, args.repeats)
        print(f"{name:18} {c['parameters']:8,} {c['mult_adds_M']:11.1f} {c['receptive_field']:3}"
              f" {c['step_ms']:8} {c['epoch_s']:8}", flush=True)  # fmt: skip
    names = " ".join(args.names) + " " if args.names else ""
    command = (f"python benchmarks/plan_cost.py {names}--batch-size {args.batch_size} "
               f"--repeats {args.repeats}")  # fmt: skip
    path = RESULTS / f"plan_cost_b{args.batch_size}.json"  # every run is kept, as one entry
    runs = json.loads(path.read_text())["runs"] if path.exists() else []
    run = {"command": command, "date": time.strftime("%Y-%m-%d"), "environment": machine(),
           "plans": rows}  # fmt: skip
    path.write_text(json.dumps({"about": ABOUT, "runs": [*runs, run]}, indent=1))

if __name__ == "__main__":
    main()
