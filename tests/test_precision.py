"""ISTNAdapter(precision="bfloat16"): bfloat16 forward passes in training, float32 elsewhere."""

import numpy as np
import pytest
import torch

from istn_sk import ISTNAdapter, TaskClassifier
from istn_sk._synthetic import make_shifted_shapes
from istn_sk._validation import ImageLayout


@pytest.fixture(scope="module")
def shapes():
    return make_shifted_shapes(40, (16, 16), shift=2.0, random_state=0)


def test_an_unknown_precision_is_one_clear_error(shapes):
    X, _, sd = shapes
    with pytest.raises(ValueError, match="precision must be one of"):
        ISTNAdapter(precision="float16", max_epochs=1).fit(X, sample_domain=sd)


def _conv_dtypes(module: torch.nn.Module, seen: list) -> list:
    first = next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    return [first.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))]


def test_bfloat16_trains_in_bfloat16_and_transforms_in_float32(shapes):
    X, y, sd = shapes
    adapter = ISTNAdapter(nf=4, max_epochs=1, batch_size=16, random_state=0,
                          precision="bfloat16",
                          task=TaskClassifier(nf=4, max_epochs=1, random_state=0))
    seen, task_seen = [], []
    net = adapter._build_net(ImageLayout(X.shape[1:], 1, X.shape[2:]),
                             TaskClassifier(nf=4).set_params(random_state=0))
    net.task_net.n_channels_, net.task_net.image_shape_, net.task_net.n_outputs_ = 1, (16, 16), 2
    net.task_net.initialize()
    net.initialize()
    hooks = _conv_dtypes(net.module_, seen) + _conv_dtypes(net.task_net.module_, task_seen)
    source, target = torch.from_numpy(X[sd > 0][:8]), torch.from_numpy(X[sd < 0][:8])
    net.history.new_epoch()
    net.history.new_batch()
    net.train_step((source, target, torch.from_numpy(y[sd > 0][:8] % 2)))
    assert set(seen) == {torch.bfloat16} and set(task_seen) == {torch.bfloat16}
    seen.clear()
    with torch.no_grad():
        output = net.module_["s2t"].eval()(source)
    assert set(seen) == {torch.float32} and output.dtype == torch.float32
    for hook in hooks:
        hook.remove()
    fitted = adapter.fit(X, np.where(sd > 0, y % 2, -1), sample_domain=sd)
    assert fitted.transform(X[sd > 0]).dtype == X.dtype


def _stn_head_gradient(precision: str) -> torch.Tensor:
    X, _, sd = make_shifted_shapes(16, (16, 16), shift=2.0, random_state=3)
    torch.manual_seed(0)
    net = ISTNAdapter(nf=4, precision=precision, content_losses=None)._build_net(
        ImageLayout(X.shape[1:], 1, X.shape[2:]))
    net.initialize()
    torch.manual_seed(1)
    with net.autocast():
        terms, _ = net.istn_losses(torch.from_numpy(X[sd > 0]), torch.from_numpy(X[sd < 0]))
    sum(terms.values()).backward()
    return net.module_["s2t"].stn.head.weight.grad


def test_the_stn_geometry_stays_float32_under_bfloat16():
    # in bfloat16 the affine head's gradient was exactly 0 (positions of 16 voxels keep
    # 8 bits: a displacement of a tenth of a voxel rounds away); in float32 geometry it
    # matches float32 training to the rounding of the bfloat16 convolutions around it
    exact, mixed = _stn_head_gradient("float32"), _stn_head_gradient("bfloat16")
    assert exact.norm() > 0
    assert (mixed - exact).norm() < 0.25 * exact.norm()


def test_bfloat16_undoes_a_known_2d_shift_like_float32():
    # test_adapter's shift (150 + 150 images, 24x24, 3 px on both axes, ITN + affine,
    # nf 8, 10 epochs). Seeds 0-9 at 1 thread: bfloat16 ratio 0.121-0.144 but for seed 2
    # (0.343), float32 0.122-0.176; displacement -2.2..-2.4 on both axes in every run.
    X, _, sd = make_shifted_shapes(150, (24, 24), shift=3.0, random_state=0)
    adapter = ISTNAdapter(stn="affine", nf=8, max_epochs=10, random_state=0,
                          precision="bfloat16").fit(X, sample_domain=sd)
    source, target = X[sd > 0], X[sd < 0]
    ratio = np.abs(adapter.transform(source) - target).mean() / np.abs(source - target).mean()
    assert ratio < 0.3, f"mean |S2T - T| / mean |S - T| = {ratio:.3f}"
    shift = adapter.explain(source)["displacement"].mean(axis=(0, 2, 3))
    assert np.all(shift < -1.5), shift
