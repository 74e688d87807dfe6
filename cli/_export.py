"""``export``: a saved model's network as ONNX, safetensors weights or TorchScript."""

from __future__ import annotations

from pathlib import Path

import click

from istn_sk._export import FORMATS


def _model_file(model: Path, task: bool) -> Path:
    """MODEL itself, or the model file of the run folder MODEL."""
    if model.is_file():
        if task:
            raise click.UsageError("--task picks the task model of a run folder; MODEL is a "
                                   "file, so give task.pt itself")
        return model
    names = ("task.pt", "model.pt") if task else ("adapter.pt", "model.pt")
    for name in names:
        if (model / name).is_file():
            return model / name
    raise ValueError(f"{model} holds neither {' nor '.join(names)}: give a run folder of "
                     "`istn-sk fit` or `istn-sk train-task`, or a model file")


@click.command("export")
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.option("--format", "format_", type=click.Choice(FORMATS), default="onnx",
              show_default=True,
              help="onnx (opset 20, dynamic batch axis), safetensors (weights, and a JSON "
                   "sidecar OUT.json with the parameters that rebuild the network) or "
                   "torchscript (torch.jit.trace).")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="File to write, in an existing folder.")
@click.option("--task", is_flag=True,
              help="From a run folder of `fit`, export its task model (task.pt) instead of "
                   "the adapter.")
@click.option("--b2a", is_flag=True, help="Export the T -> S ISTN of a cyclegan adapter.")
@click.option("--force", is_flag=True, help="Replace existing output files.")
def export_command(model: Path, format_: str, out: Path, task: bool, b2a: bool,
                   force: bool) -> None:
    """Export the network of MODEL (a model file, or a run folder) for deployment.

    A run folder of `fit` gives its adapter (adapter.pt; with --task its task
    model, task.pt), one of `train-task` its model.pt. An adapter exports its
    S -> T ISTN (--b2a: T -> S); a task model its network, which returns
    logits (classifiers) or predictions (regressors). The input is `images`,
    (batch, C, *spatial) in [-1, 1]. Needs the extra istn-sk[export] for onnx
    and safetensors.
    """
    from istn_sk import export, load_model
    from istn_sk._export import sidecar_path

    source = _model_file(model, task)
    outputs = [out, sidecar_path(out)] if format_ == "safetensors" else [out]
    for path in outputs:
        if path.exists() and not force:
            raise FileExistsError(f"{path} exists; --force replaces it")
    export(load_model(source), out, format_, direction="t2s" if b2a else None, overwrite=force)
    click.echo(f"wrote {' and '.join(map(str, outputs))} from {source}")
