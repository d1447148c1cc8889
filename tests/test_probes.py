"""The airbench tweaks that benchmarks/architecture_probes.py can apply to a candidate plan."""

import sys

import torch

from course_lib.data import channel_stats
from course_lib.links import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))  # the probes import their neighbours by name
import architecture_probes as probes  # noqa: E402


def smooth_images(n=300, seed=0):
    """Random images blurred so neighbouring pixels and channels correlate, like photographs."""
    noise = torch.randn(n, 3, 36, 36, generator=torch.Generator().manual_seed(seed))
    x = torch.nn.functional.avg_pool2d(noise + noise.mean(1, keepdim=True), 5, stride=1)
    return (128 + 100 * x).clamp(0, 255).permute(0, 2, 3, 1).to(torch.uint8).numpy()


def test_whitened_first_conv_decorrelates_the_patches_it_was_fitted_on():
    images = smooth_images()
    model = probes.PROBES["mid"]()
    probes.whiten_first_conv(model, images, eps=1e-6)
    conv = model.prep[0]
    assert not conv.weight.requires_grad
    half = conv.out_channels // 2
    assert torch.equal(conv.weight[:half], -conv.weight[half:])  # each filter and its negative
    stats = channel_stats(images)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).double() / 255
    mean, std = (torch.from_numpy(stats[k])[:, None, None] for k in ("mean", "std"))
    x = (x - mean) / std
    with torch.no_grad():  # unpadded: every response sees a whole patch
        y = torch.nn.functional.conv2d(x, conv.weight[:half].double())
    cov = torch.cov(y.permute(1, 0, 2, 3).reshape(half, -1))
    assert torch.allclose(cov, torch.eye(half, dtype=cov.dtype), atol=0.02)


def test_batchnorm_scale_is_fixed_and_its_shift_still_learns():
    model = probes.PROBES["mid"]()
    probes.fix_batchnorm_scale(model)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not bn.weight.requires_grad and bn.bias.requires_grad for bn in bns)


def test_batchnorm_recalibration_replaces_the_running_stats_with_the_data_average():
    import bn_recalibration

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    bn = model[1]
    bn.running_mean.fill_(5.0)  # stale statistics, far from the data's
    batches = [(torch.randn(8, 3, 6, 6) + i, torch.zeros(8)) for i in range(3)]
    bn_recalibration.recalibrate_batchnorm(model, batches, torch.device("cpu"))
    with torch.no_grad():
        features = model[0](torch.cat([x for x, _ in batches]))
    expected = features.mean((0, 2, 3))
    torch.testing.assert_close(bn.running_mean, expected)
    assert not model.training


def test_tracked_averages_follow_the_optimizer_steps_as_the_trainer_ema_would():
    import architecture_probes as probes

    from course_lib.train import warmed_ema

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    averages, hook = probes.track_averages(model, [0.9])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    steps = []
    for _ in range(5):
        model(torch.randn(4, 3)).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
        steps.append(model.weight.detach().clone())
    hook.remove()
    expected = [steps[0].clone()]  # AveragedModel copies on its first update
    for n, weight in enumerate(steps[1:], start=1):
        warmed_ema(0.9)(expected, [weight], torch.tensor(n))
    torch.testing.assert_close(averages["ema0.9"].module.weight, expected[0])
    assert not torch.equal(averages["ema0.9"].module.weight, model.weight)
