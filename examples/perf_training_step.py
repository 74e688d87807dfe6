"""Throughput of one ISTN training step (ITN [+ affine STN] + D + task), ours against a plain one.

For each configuration the script times, in the same process and on the same
random batch, the steps interleaved (each round times every variant once, so
a change in the machine's load touches them all alike):

* ``reference``: the seed code's step written plainly: a discriminator
  update with separate D passes over S2T and T, then an ISTN update that
  recomputes S2T, then a task-model update (float32, contiguous tensors);
* ``istn-sk``: :meth:`istn_sk._adversarial_net.AdversarialISTNNet.train_step`
  with a simultaneous task model and the reference's losses (no content
  loss): one discriminator pass over S2T and T together, no recomputation of
  S2T, no discriminator gradients during the ISTN update, and channels-last
  weights and batches;
* ``istn-sk bf16``: the same with ``precision="bfloat16"`` (forward passes
  under bfloat16 autocast, the STN's geometry in float32);
* ``+ PatchNCE`` and ``+ PatchNCE bf16``: the library's default objective,
  with the content loss (``content_losses="auto"``), in both precisions.

It reports images/s (source images per second), the step's FLOPs counted by
``torch.utils.flop_counter``, the achieved GFLOP/s against measured SGEMM
(float32) and bfloat16 GEMM peaks on the same machine, and each
configuration's peak RSS (measured in a child process per configuration).
With ``--profile`` it also writes, per configuration, where the time of
istn-sk's float32 and bfloat16 steps goes (``torch.profiler``, the operators
with the most self time: ``profile-<config>.md``).

Run: ``python examples/perf_training_step.py [--out DIR] [--steps N] [--configs ...]
[--profile] [--compile]``
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from istn_sk import ISTNAdapter, TaskClassifier
from istn_sk._validation import ImageLayout
from istn_sk.evaluate import to_markdown

CONFIGS = {
    "2d-28-b64-itn": dict(shape=(28, 28), batch=64, nf=16, stn=None),
    "2d-28-b64": dict(shape=(28, 28), batch=64, nf=16),
    "3d-32-b8": dict(shape=(32, 32, 32), batch=8, nf=8),
    "3d-64-b8": dict(shape=(64, 64, 64), batch=8, nf=8),
}


#: The variants timed: the reference, then istn-sk's step with its settings.
VARIANTS = {
    "reference": None,
    "istn-sk": {"content_losses": None, "precision": "float32"},
    "istn-sk bf16": {"content_losses": None, "precision": "bfloat16"},
    "+ PatchNCE": {"content_losses": "auto", "precision": "float32"},
    "+ PatchNCE bf16": {"content_losses": "auto", "precision": "bfloat16"},
}


def build(shape, nf, task=True, plain=False, stn="affine", **settings):
    """An initialised adversarial net (and its task model) for single-channel images.

    ``plain=True`` keeps the default contiguous memory layout, as the seed code
    does; ``settings`` are ISTNAdapter parameters (``precision``, ``content_losses``).
    """
    adapter = ISTNAdapter(stn=stn, nf=nf, task=TaskClassifier(nf=nf) if task else None,
                          **settings)
    layout = ImageLayout((1, *shape), 1, tuple(shape))
    task_net = None
    if task:
        task_net = TaskClassifier(nf=nf)
        task_net.n_channels_, task_net.image_shape_, task_net.n_outputs_ = 1, tuple(shape), 3
        task_net.initialize()
    net = adapter._build_net(layout, task_net)
    net.initialize()
    if plain:
        net.memory_format = torch.contiguous_format
        net.module_.to(memory_format=torch.contiguous_format)
        net.discriminator_.to(memory_format=torch.contiguous_format)
    net.history.new_epoch()
    return net


def reference_step(net, source, target, labels, weight=10.0):
    """The seed's step: D update (separate passes), ISTN update (S2T recomputed), task update."""
    istn, dis = net.module_["s2t"], net.discriminator_["target"]
    task = net.task_net
    for module in (istn, dis, task.module_):
        module.train()
    s2t = istn(source)
    p_fake, p_real = torch.sigmoid(dis(s2t.detach())), torch.sigmoid(dis(target))
    loss_d = 0.5 * (F.binary_cross_entropy(p_fake, torch.rand_like(p_fake) * 0.03)
                    + F.binary_cross_entropy(p_real, 1 - torch.rand_like(p_real) * 0.03))
    net.optimizer_discriminator_.zero_grad()
    loss_d.backward()
    net.optimizer_discriminator_.step()
    s2t = istn(source)
    p_fake = torch.sigmoid(dis(s2t))
    loss_g = (F.binary_cross_entropy(p_fake, 1 - torch.rand_like(p_fake) * 0.03)
              + 0.5 * weight * F.l1_loss((istn(target) + 1) / 2, (target + 1) / 2))
    net.optimizer_.zero_grad()
    loss_g.backward()
    net.optimizer_.step()
    loss_t = F.cross_entropy(task.module_(s2t.detach()), labels)
    task.optimizer_.zero_grad()
    loss_t.backward()
    task.optimizer_.step()


def ours_step(net, source, target, labels):
    """istn-sk's own training step (with the history entry skorch's loop would open)."""
    net.history.new_batch()
    net.train_step((source, target, labels))


def time_steps(step, net, batch, steps: int) -> float:
    """Median seconds per step after one warm-up step."""
    return time_interleaved({"one": (step, net)}, batch, steps)["one"]


def time_interleaved(runs: dict, batch, steps: int) -> dict[str, float]:
    """Median seconds per step of each ``(step, net)`` in ``runs``, timed in turn.

    Each round times every run once (after one warm-up round), so the
    machine's load changes touch every variant alike.
    """
    for step, net in runs.values():
        step(net, *batch)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(steps):
        for name, (step, net) in runs.items():
            start = time.perf_counter()
            step(net, *batch)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def profile_table(step, net, batch, rows: int = 15) -> pd.DataFrame:
    """The operators with the most self CPU time over two steps (``torch.profiler``)."""
    from torch.profiler import ProfilerActivity, profile

    step(net, *batch)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(2):
            step(net, *batch)
    events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return pd.DataFrame([{"operator": e.key, "calls per step": e.count / 2,
                          "self ms per step": e.self_cpu_time_total / 2e3,
                          "% of self time": 100 * e.self_cpu_time_total / total}
                         for e in events[:rows]])


def count_flops(step, net, batch) -> int:
    """FLOPs of one step (forward and backward), as torch's flop counter sees them."""
    with FlopCounterMode(display=False) as counter:
        step(net, *batch)
    return counter.get_total_flops()


def sgemm_peak(sizes: tuple[int, ...] = (1024, 2048, 4096), repeats: int = 5,
               dtype: torch.dtype = torch.float32) -> float:
    """Best GFLOP/s of n x n matrix products in ``dtype`` on this machine, over ``sizes``."""
    best = 0.0
    for n in sizes:
        a, b = torch.rand(n, n, dtype=dtype), torch.rand(n, n, dtype=dtype)
        a @ b
        seconds = min(_timed(a.matmul, b) for _ in range(repeats))
        best = max(best, 2 * n**3 / seconds / 1e9)
    return best


def _timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def compile_modules(net) -> None:
    """Replace the ISTN, discriminator and task modules by ``torch.compile`` wrappers."""
    for modules in (net.module_, net.discriminator_):
        for key in list(modules):
            modules[key] = torch.compile(modules[key])
    net.task_net.module_ = torch.compile(net.task_net.module_)


def measure(name: str, steps: int, compiled: bool = False,
            profile_dir: Path | None = None) -> dict:
    """All figures of one configuration (run in a child process for a clean peak RSS).

    With ``compiled``, also times istn-sk's step with ``torch.compile``d modules;
    its FLOPs are those of the eager step (the same arithmetic). With
    ``profile_dir``, writes ``profile-<name>.md`` there.
    """
    config = CONFIGS[name]
    torch.manual_seed(0)
    shape, batch_size = config["shape"], config["batch"]
    batch = (torch.rand(batch_size, 1, *shape) * 2 - 1, torch.rand(batch_size, 1, *shape) * 2 - 1,
             torch.randint(0, 3, (batch_size,)))
    row = {"config": name, "threads": torch.get_num_threads()}
    stn = config.get("stn", "affine")
    runs = {label: ((reference_step, build(shape, config["nf"], plain=True, stn=stn))
                    if settings is None
                    else (ours_step, build(shape, config["nf"], stn=stn, **settings)))
            for label, settings in VARIANTS.items()}
    seconds = time_interleaved(runs, batch, steps)
    for label, (step, net) in runs.items():
        flops = count_flops(step, net, batch)
        row[f"{label} img/s"] = batch_size / seconds[label]
        row[f"{label} GFLOP/step"] = flops / 1e9
        row[f"{label} GFLOP/s"] = flops / seconds[label] / 1e9
    for label in list(VARIANTS)[1:]:
        row[f"{label} speed-up"] = row[f"{label} img/s"] / row["reference img/s"]
    if profile_dir is not None:
        tables = [f"## {label}\n\n{to_markdown(profile_table(*runs[label], batch), '.2f')}"
                  for label in ("istn-sk", "istn-sk bf16")]
        (profile_dir / f"profile-{name}.md").write_text(
            f"# Where the step's time goes: {name}, {row['threads']} thread(s)\n\n"
            + "\n\n".join(tables) + "\n")
    if compiled:
        net = build(shape, config["nf"], stn=stn, **VARIANTS["istn-sk"])
        compile_modules(net)
        start = time.perf_counter()
        ours_step(net, *batch)
        row["compile s"] = time.perf_counter() - start
        row["compiled img/s"] = batch_size / time_steps(ours_step, net, batch, steps)
    row["peak RSS (GB)"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("perf-output"))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--compile", action="store_true",
                        help="also time istn-sk's step with torch.compile'd modules")
    parser.add_argument("--profile", action="store_true",
                        help="also write where each configuration's step time goes")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.steps, args.compile,
                                 args.out if args.profile else None)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    peaks = [sgemm_peak()]
    rows = []
    for name in args.configs:
        print(f"measuring {name} ...", flush=True)
        command = [sys.executable, __file__, "--child", name, "--steps", str(args.steps),
                   "--out", str(args.out)]
        command += ["--compile"] * args.compile + ["--profile"] * args.profile
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    peaks.append(sgemm_peak())
    peak, bf16_peak = max(peaks), sgemm_peak(dtype=torch.bfloat16)
    print(f"SGEMM peak {peaks[0]:.1f} GFLOP/s before, {peaks[1]:.1f} after; using the larger; "
          f"bfloat16 GEMM peak {bf16_peak:.1f}")
    table = pd.DataFrame(rows)
    table["SGEMM peak GFLOP/s"] = peak
    table["bf16 GEMM peak GFLOP/s"] = bf16_peak
    for label in list(VARIANTS)[1:]:
        table[f"{label} % of SGEMM peak"] = 100 * table[f"{label} GFLOP/s"] / peak
    print(table.to_string(index=False, float_format="%.2f"))
    table.to_csv(args.out / "perf.csv", index=False)
    (args.out / "perf.md").write_text(to_markdown(table, ".2f"))
    print(f"wrote {args.out / 'perf.csv'} and {args.out / 'perf.md'}; torch {torch.__version__}, "
          f"{np.__name__} {np.__version__}")


if __name__ == "__main__":
    main()
