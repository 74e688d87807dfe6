"""Experiment tracking (TensorBoard, MLflow) and per-epoch progress for the training commands."""

from __future__ import annotations

import os
from collections.abc import Mapping
from numbers import Number
from typing import Any

import click

from ._settings import option_group

#: The pip extra that installs the tracking packages.
TRACKING_EXTRA = "pip install 'istn-sk[tracking]'"
MLFLOW_EXPERIMENT = "istn-sk"
#: MLflow's limits: parameters per ``log_batch`` call, characters per value.
MLFLOW_PARAMS_PER_BATCH, MLFLOW_PARAM_CHARS = 100, 6000

tracking_options = option_group(
    click.option("--tensorboard", type=click.Path(file_okay=False),
                 help="Write each epoch's losses and scores as TensorBoard events to this "
                      "folder (needs the tracking extra)."),
    click.option("--mlflow-uri",
                 help="Log the run (settings, each epoch's losses and scores) to this MLflow "
                      "tracking URI, e.g. file:///tmp/mlruns, in experiment 'istn-sk' "
                      "(needs the tracking extra)."),
)


def _missing(option: str, package: str) -> ValueError:
    return ValueError(f"{option} needs the {package} package: {TRACKING_EXTRA}")


def tracking_callbacks(settings: Mapping[str, Any], *, command: str, run_name: str) -> list:
    """The skorch callbacks that ``--tensorboard`` and ``--mlflow-uri`` ask for.

    Parameters
    ----------
    settings : mapping
        The run's settings; ``tensorboard`` and ``mlflow_uri`` are read.
    command : str
        The command (an MLflow tag).
    run_name : str
        The MLflow run's name (the output folder's name).

    Returns
    -------
    list
        ``skorch.callbacks.TensorBoard`` and/or ``skorch.callbacks.MlflowLogger``.

    Raises
    ------
    ValueError
        A package they need is not installed.
    """
    callbacks = []
    if settings.get("tensorboard"):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing("--tensorboard", "tensorboard") from None
        from skorch.callbacks import TensorBoard

        callbacks.append(TensorBoard(SummaryWriter(settings["tensorboard"])))
    if settings.get("mlflow_uri"):
        callbacks.append(_mlflow_logger(settings, command=command, run_name=run_name))
    return callbacks


def _mlflow_logger(settings: Mapping[str, Any], *, command: str, run_name: str):
    uri = settings["mlflow_uri"]
    if uri.startswith("file:") or "://" not in uri:
        # asking for a file store is opting in to it (MLflow 3 refuses it by default)
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise _missing("--mlflow-uri", "mlflow-skinny (or mlflow)") from None
    from skorch.callbacks import MlflowLogger

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(MLFLOW_EXPERIMENT)
    experiment_id = (experiment.experiment_id if experiment is not None
                     else client.create_experiment(MLFLOW_EXPERIMENT))
    run = client.create_run(experiment_id, run_name=run_name,
                            tags={"istn_sk.command": command})
    params = [Param(key, str(value)[:MLFLOW_PARAM_CHARS]) for key, value in sorted(settings.items())
              if isinstance(value, (str, Number)) and value != ""]
    for start in range(0, len(params), MLFLOW_PARAMS_PER_BATCH):
        client.log_batch(run.info.run_id, params=params[start:start + MLFLOW_PARAMS_PER_BATCH])
    return MlflowLogger(run=run, client=client, create_artifact=False)
