"""``fit``, ``train-task`` and ``protocol``: the commands that train estimators; ``report``.

``report RUN_DIR`` rebuilds a run folder's ``report.html``; given the
protocol's options instead (its old meaning), it runs ``protocol`` and says
so.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from istn_sk._validation import MIN_DOMAIN_IMAGES

from ._data import ImageSet, chosen_sites, load_image_set, site_mask
from ._resume import (
    CHECKPOINT_META_KEY,
    CHECKPOINT_NAME,
    prepare_resume,
    resume_option,
    stopped_line,
)
from ._run import open_run
from ._settings import (
    ROUTED_PREFIXES,
    check_num_classes,
    config_options,
    data_options,
    estimator_options,
    option_group,
    pairs_to_dict,
    plain_params,
    quiet_option,
    resolve_settings,
    run_options,
)
from ._tracking import tracking_callbacks, tracking_options

#: Run settings the task model shares with the adapter (and a fresh task model also ``nf``,
#: as in the reference, where one ``nf`` sizes every network).
SHARED_WITH_TASK = ("device", "random_state", "augmentation")
TASK_PREFIX = "task__"


#: The reference's two sites: ``siteA_name``, ``siteA_train``, ``siteA_val`` and siteB's.
REFERENCE_SITES = ("siteA", "siteB")
#: The defaults of ``siteA_name`` and ``siteB_name``.
DEFAULT_SITE_NAMES = ("A", "B")


def _extra_settings() -> dict[str, Any]:
    from istn_sk.evaluate import DEFAULT_THRESHOLDS

    return {"files": [], "thresholds": list(DEFAULT_THRESHOLDS), "num_classes": None}


def _fit_extra_settings() -> dict[str, Any]:
    """``fit``'s settings without an option: also the reference's two sites and ``cyc_loss``."""
    sites = {f"{site}_{part}": None for site in REFERENCE_SITES
             for part in ("name", "train", "val")}
    return {**_extra_settings(), **sites, "cyc_loss": None}


def _reference_fit_settings(settings: dict[str, Any]) -> None:
    """The reference's ``siteA_*``/``siteB_*`` and ``cyc_loss``, turned into ``fit``'s settings.

    ``siteA_train`` and ``siteB_train`` (and ``_val``) are the two sites'
    manifests (read together, the site column holding ``siteA_name`` and
    ``siteB_name``, the defaults of ``source_site`` and ``target_site``);
    ``cyc_loss`` is the loss of the cycle terms, which only ``mode=cyclegan``
    has (da_bidirectional_training.py): it selects that mode, and must be
    ``idt_loss``, the loss istn-sk computes the cycle terms with.
    """
    from istn_sk import ISTNAdapter

    for part, option in (("train", "train_set"), ("val", "test_set")):
        given = [key for key in (f"{site}_{part}" for site in REFERENCE_SITES)
                 if settings.get(key)]
        if given and settings.get(option):
            raise ValueError(f"{option} and {' and '.join(given)} both name the {part} images; "
                             "give one or the other")
        if len(given) == 1:
            raise ValueError(f"{given[0]} needs its pair: siteA_{part} and siteB_{part} are the "
                             "source and target sites' manifests")
        for key in given:
            settings[key] = str(Path(settings[key]).absolute())
    if any(settings.get(f"{site}_train") for site in REFERENCE_SITES):
        names = _site_names(settings)
        if names[0] == names[1]:
            raise ValueError(f"siteA_name and siteB_name are both {names[0]!r}")
        for role, name in zip(("source_site", "target_site"), names, strict=True):
            if settings.get(role) is None:
                settings[role] = name
    elif any(settings.get(f"{site}_name") for site in REFERENCE_SITES):
        raise ValueError("siteA_name/siteB_name name the sites of siteA_train and siteB_train, "
                         "which are not given (with train_set, use source_site/target_site)")
    cyc_loss = settings.get("cyc_loss")
    if cyc_loss is not None:
        idt_loss = settings.get("idt_loss", ISTNAdapter().idt_loss)
        if cyc_loss != idt_loss:
            raise ValueError(f"cyc_loss={cyc_loss!r} but idt_loss={idt_loss!r}: istn-sk computes "
                             "the cycle terms with idt_loss; set them equal")
        if settings.get("mode", "cyclegan") != "cyclegan":
            raise ValueError(f"cyc_loss is the loss of the cycle terms of mode cyclegan (the "
                             f"reference's da_bidirectional_training.py), but mode is "
                             f"{settings['mode']!r}")
        settings["mode"] = "cyclegan"


def _reference_val_interval(settings: dict[str, Any], default_epochs: int) -> None:
    """A ``val_interval`` above the epochs validates every epoch, as in the reference."""
    if settings["val_interval"] > settings.get("max_epochs", default_epochs):
        settings["val_interval"] = 1


def _site_names(settings: Mapping[str, Any]) -> list[str]:
    """``siteA_name`` and ``siteB_name`` (default ``A`` and ``B``)."""
    return [str(settings.get(f"{site}_name") or default)
            for site, default in zip(REFERENCE_SITES, DEFAULT_SITE_NAMES, strict=True)]


def _site_pair(settings: Mapping[str, Any], part: str, where: Any) -> ImageSet | None:
    """``siteA_<part>`` and ``siteB_<part>`` as one image set (None when not given)."""
    from istn_sk.io import read_manifest
    from istn_sk.io._manifest import combine_manifests

    paths = [settings.get(f"{site}_{part}") for site in REFERENCE_SITES]
    if not all(paths):
        return None
    manifests = [read_manifest(path, image_key=settings["image_key"],
                               mask_key=settings.get("mask_key")) for path in paths]
    combined = combine_manifests(manifests, _site_names(settings),
                                 site_key=settings["site_key"])
    conditions = pairs_to_dict(where.items() if isinstance(where, Mapping) else where)
    kept = combined.where(conditions)
    if not len(kept):
        raise ValueError(f"{combined.source}: no rows left after the filters {conditions}")
    return ImageSet(kept.table, combined.source, manifest=kept,
                    normalizer=settings["normalizer"])


task_options = option_group(
    click.option("--model-type", type=click.Choice(["classifier", "regressor"]),
                 help="Task model to train (the reference's --model_type)."),
    click.option("--task-model", type=click.Path(dir_okay=False),
                 help="A saved task model (.pt) whose settings the new one starts from."),
    click.option("--finetune", is_flag=True,
                 help="Start from the --task-model's weights instead of a fresh network."),
)
validation_options = option_group(
    click.option("--val-interval", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Epochs between validation steps (scores on the test set, samples)."),
    click.option("--early-stopping-epochs", type=click.IntRange(min=1),
                 help="Stop when the task model's training loss has not improved for this "
                      "many epochs."),
)
sites_options = option_group(
    click.option("--source-site", help="Site of the source images S."),
    click.option("--target-site", help="Site of the target images T."),
    click.option("--b2a", is_flag=True, help="Swap the source and target sites."),
)


def _task_keys() -> set[str]:
    from istn_sk import TaskClassifier

    return plain_params(TaskClassifier())


def _task_params(settings: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    keys = _task_keys()
    params = {}
    for key, value in settings.items():
        if key.startswith(prefix):
            name = key[len(prefix):]
            if name in keys or name.startswith(ROUTED_PREFIXES):
                params[name] = value
    return params


def build_task(model_type: str | None, task_model: str | None, params: Mapping[str, Any], *,
               finetune: bool = False):
    """An unfitted task estimator of ``model_type``, or a copy of the saved ``task_model``.

    ``params`` set its parameters; with ``finetune``, its ``init_params``
    are the saved model's weights.
    """
    from sklearn.base import clone

    from istn_sk import TaskClassifier, TaskRegressor, load_model

    classes = {"classifier": TaskClassifier, "regressor": TaskRegressor}
    if finetune and not task_model:
        raise ValueError("--finetune needs --task-model (the model to start from)")
    if not task_model:
        if model_type is None:
            raise ValueError("choose --model-type (classifier or regressor) or --task-model")
        return classes[model_type](**params)
    saved = load_model(task_model)
    if not isinstance(saved, (TaskClassifier, TaskRegressor)):
        raise ValueError(f"{task_model} holds a {type(saved).__name__}, not a task model")
    if model_type is not None and not isinstance(saved, classes[model_type]):
        raise ValueError(f"{task_model} holds a {type(saved).__name__}, but --model-type is "
                         f"{model_type}")
    task = clone(saved).set_params(**params)
    if finetune:
        task.set_params(init_params={key: value.detach().clone()
                                     for key, value in saved.module_.state_dict().items()})
    return task


def _is_regressor(task) -> bool:
    from istn_sk import TaskRegressor

    return isinstance(task, TaskRegressor)


def _validation_set(settings: Mapping[str, Any], site: str | None) -> ImageSet | None:
    """The test set's rows used for validation: those of ``site`` when it has a site column."""
    test = _site_pair(settings, "val", settings["test_where"])
    if test is None and not settings.get("test_set"):
        return None
    if test is None:
        test = load_image_set(settings["test_set"], settings["test_where"], settings,
                              role="test_set")
    if site is not None and settings["site_key"] in test.table.columns:
        test = test.rows(site_mask(test, settings, site))
        if not len(test):
            raise ValueError(f"{settings['test_set']}: no rows of site {site!r} to validate on")
    return test


def _labelled(images: ImageSet, settings: Mapping[str, Any], *,
              regression: bool) -> tuple[ImageSet, Any]:
    """The rows with a label, and their labels."""
    import pandas as pd

    labels = images.labels(settings.get("label_key"), regression=regression)
    keep = ~pd.isna(labels)
    if not keep.all():
        click.echo(f"note: {images.name}: {int((~keep).sum())} rows without a label are "
                   "left out", err=True)
    return images.rows(keep), labels[keep]


def _callbacks(settings: Mapping[str, Any], validation: ImageSet | None, task, *,
               monitor: str | None) -> list:
    """Validation scores every ``val_interval`` epochs, and early stopping on ``monitor``."""
    from skorch.callbacks import EarlyStopping

    from istn_sk.io import EpochScores

    callbacks = []
    if validation is not None and task is not None:
        images, labels = _labelled(validation, settings, regression=_is_regressor(task))
        callbacks.append(EpochScores(images.images(num_workers=settings["num_workers"]), labels,
                                     every=settings["val_interval"],
                                     thresholds=settings["thresholds"]))
    if settings.get("early_stopping_epochs"):
        if monitor is None:
            click.echo("note: early_stopping_epochs watches the task model's loss; without a "
                       "task model it has no effect", err=True)
        else:
            callbacks.append(EarlyStopping(monitor=monitor, lower_is_better=True,
                                           patience=settings["early_stopping_epochs"]))
    return callbacks


def _verbose(settings: Mapping[str, Any], default: int = 1) -> int:
    """The estimators' ``verbose`` (skorch's per-epoch table): 0 with ``--quiet``."""
    return 0 if settings["quiet"] else int(settings.get("verbose", default))


def _progress_callbacks(settings: Mapping[str, Any], run, command: str) -> list:
    """The epoch progress report, and the --tensorboard/--mlflow-uri loggers."""
    from ._epochs import EpochProgress

    return [EpochProgress(command, quiet=settings["quiet"]),
            *tracking_callbacks(settings, command=command, run_name=run.path.name)]


def _two_sites(settings: Mapping[str, Any]) -> tuple[ImageSet, Any, list[str]]:
    """The training rows of the source and target sites, which rows are source, the sites."""
    train = _site_pair(settings, "train", settings["train_where"]) or load_image_set(
        settings["train_set"], settings["train_where"], settings, role="train_set")
    sites = chosen_sites(train, settings, ("source_site", "target_site"), swap=settings["b2a"])
    if sites[0] == sites[1]:
        raise ValueError(f"source and target site are both {sites[0]!r}")
    is_source, is_target = (site_mask(train, settings, site) for site in sites)
    for role, site, rows in zip(("source", "target"), sites, (is_source, is_target), strict=True):
        if rows.sum() < MIN_DOMAIN_IMAGES:
            raise ValueError(f"{train.name}: the {role} site {site!r} has {int(rows.sum())} "
                             f"image; at least {MIN_DOMAIN_IMAGES} images per site are needed")
    train = train.rows(is_source | is_target)
    return train, site_mask(train, settings, sites[0]), sites


def _adapter_keys() -> set[str]:
    from istn_sk import ISTNAdapter

    return plain_params(ISTNAdapter())


@click.command("fit")
@config_options
@data_options("train", "test")
@sites_options
@task_options
@estimator_options("stn", "nf", "max_epochs", "batch_size", "lr", "mode", "random_state",
                   "precision")
@validation_options
@tracking_options
@click.option("--nii", is_flag=True,
              help="Save sample S2T images as .nii.gz each validation step.")
@click.option("--png", is_flag=True,
              help="Save sample S2T images as .png each validation step (3D: central slice).")
@click.option("--n-samples", type=click.IntRange(min=1), default=3, show_default=True,
              help="Source images sampled by --nii/--png.")
@quiet_option
@resume_option
@run_options(resumable=True)
@click.pass_context
def fit_command(ctx: click.Context, **_: Any) -> None:
    """Fit an ISTN that maps source-site images to the target site.

    With --model-type or --task-model, a task model is trained at the same
    time on each batch's S2T images with the source labels (the reference's
    da_*_training.py; --finetune starts it from --task-model's weights).
    Writes adapter.pt (and task.pt), history.csv/json, config.json and
    report/*.png to --out. Every epoch is checkpointed there: a run stopped
    by Ctrl-C or SIGTERM (exit status 130/143) or killed keeps its folder,
    and --resume RUN continues it.
    """
    from istn_sk._interrupt import stop_on_signals

    resume = prepare_resume(ctx)
    with stop_on_signals(report=stopped_line(ctx)):
        _fit(ctx, resume=resume)


def _fit(ctx: click.Context, *, resume: bool) -> None:
    from pathlib import Path

    import numpy as np

    from istn_sk import ISTNAdapter
    from istn_sk.io import SampleWriter
    from istn_sk.io._images import VOLUME_FORMATS, image_format
    from istn_sk.report import write_run_report

    adapter_keys = _adapter_keys()
    settings = resolve_settings(ctx, estimator_keys=adapter_keys, prefixes=(TASK_PREFIX,),
                                extra=_fit_extra_settings())
    _reference_fit_settings(settings)
    _reference_val_interval(settings, ISTNAdapter().max_epochs)
    run = open_run(ctx, settings, resume=resume)
    train, is_source, sites = _two_sites(settings)
    task, y = None, None
    if settings.get("model_type") or settings.get("task_model"):
        shared = [*SHARED_WITH_TASK, *([] if settings.get("task_model") else ["nf"])]
        params = {name: settings[name] for name in shared if name in settings}
        task = build_task(settings.get("model_type"), settings.get("task_model"),
                          {**params, **_task_params(settings, TASK_PREFIX)},
                          finetune=settings["finetune"])
        labels = train.labels(settings.get("label_key"), regression=_is_regressor(task))
        check_num_classes(settings["num_classes"], regression=_is_regressor(task),
                          classes=set(labels[is_source]), where=f"{train.name} (source site)")
        y = np.where(is_source, labels, np.nan if _is_regressor(task) else -1)
    else:
        unused = [key for key in ("label_key", "num_classes") if settings.get(key) is not None]
        if unused:
            click.echo(f"note: {', '.join(unused)}: no effect without a task model (give "
                       "--model-type, the reference's --model_type, or --task-model)", err=True)
    X = train.images(num_workers=settings["num_workers"])
    callbacks = _callbacks(settings, _validation_set(settings, sites[1]), task,
                           monitor=None if task is None else "task_loss")
    if settings["nii"] or settings["png"]:
        rows = np.flatnonzero(is_source)[: settings["n_samples"]]
        files = train.files()
        nifti = files is not None and image_format(train.output_suffixes()[0]) in VOLUME_FORMATS
        callbacks.append(SampleWriter(
            X[rows], run.file("samples"),
            names=[Path(train.output_names()[i]).name for i in rows],
            formats=[kind for kind in ("nii", "png") if settings[kind]],
            every=settings["val_interval"], like=[files[i] for i in rows] if nifti else None,
            normalizer=settings["normalizer"]))
    callbacks += _progress_callbacks(settings, run, "fit")
    params = {key: settings[key] for key in adapter_keys if key in settings}
    params["verbose"] = _verbose(settings, default=0)   # the progress report shows each epoch
    checkpoint_dir = Path(settings.get("checkpoint_dir") or run.path).absolute()
    ctx.meta[CHECKPOINT_META_KEY] = checkpoint_dir / CHECKPOINT_NAME
    adapter = ISTNAdapter(**{**params, "checkpoint_dir": checkpoint_dir}, task=task,
                          callbacks=callbacks)
    adapter.fit(X, y, sample_domain=np.where(is_source, 1, -2))
    adapter.set_params(checkpoint_dir=settings.get("checkpoint_dir"))   # not the run's folder
    run.save_model(adapter, "adapter.pt")
    if task is not None:
        run.save_model(adapter.task_, "task.pt")
    run.write_history(adapter.history_)
    run.write_explanation(adapter.explain(X[is_source][:8]), X[~is_source][:8])
    if not settings.get("checkpoint_dir"):   # the run is complete: its checkpoint is spent
        (checkpoint_dir / CHECKPOINT_NAME).unlink(missing_ok=True)
    source = X[is_source] if y is None else (X[is_source], y[is_source])
    write_run_report(run.path, command="fit", adapter=adapter, source=X[is_source],
                     target=X[~is_source],
                     data={f"source ({sites[0]})": source, f"target ({sites[1]})": X[~is_source]})
    click.echo(f"wrote {run.path}")


@click.command("train-task")
@config_options
@data_options("train", "test")
@click.option("--source-site", help="Train on the rows of this site (default: every row; "
                                    "for a registered dataset, its source rows).")
@task_options
@click.option("--adapter", type=click.Path(dir_okay=False),
              help="A fitted adapter (.pt): train on its S2T images (the sequential scheme).")
@estimator_options("nf", "max_epochs", "batch_size", "lr", "random_state")
@validation_options
@tracking_options
@quiet_option
@run_options
@click.pass_context
def train_task_command(ctx: click.Context, **_: Any) -> None:
    """Train a task model (classifier or regressor) on labelled images.

    The reference's train_task_model.py: T_S on the source site, or, with
    --adapter or on images written by `istn-sk transform`, T_S2T. Writes
    model.pt, history.csv/json, config.json and report/*.png to --out.
    """
    from istn_sk import ISTNAdapter, TaskClassifier, load_model

    settings = resolve_settings(ctx, estimator_keys=_task_keys(), prefixes=ROUTED_PREFIXES,
                                extra={**_extra_settings(), "dataset_name": None})
    _reference_val_interval(settings, TaskClassifier().max_epochs)
    run = open_run(ctx, settings)
    train = load_image_set(settings["train_set"], settings["train_where"], settings,
                           role="train_set")
    if settings["dataset_name"] is not None and not settings["quiet"]:
        click.echo(f"train-task: dataset {settings['dataset_name']} ({settings['train_set']})",
                   err=True)
    site = None
    if settings.get("source_site") is not None or train.manifest is None:
        (site,) = chosen_sites(train, settings, ("source_site",))
        train = train.rows(site_mask(train, settings, site))
    task = build_task(settings.get("model_type"), settings.get("task_model"),
                      {**_task_params(settings, ""), "verbose": _verbose(settings, default=0)},
                      finetune=settings["finetune"])
    train, y = _labelled(train, settings, regression=_is_regressor(task))
    check_num_classes(settings["num_classes"], regression=_is_regressor(task), classes=set(y),
                      where=train.name)
    X = train.images(num_workers=settings["num_workers"])
    if settings.get("adapter"):
        adapter = load_model(settings["adapter"])
        if not isinstance(adapter, ISTNAdapter):
            raise ValueError(f"{settings['adapter']} holds a {type(adapter).__name__}, "
                             "not an ISTNAdapter")
        X = adapter.transform(X)
    task.set_params(callbacks=[*_callbacks(settings, _validation_set(settings, site), task,
                                           monitor="train_loss"),
                               *_progress_callbacks(settings, run, "train-task")])
    task.fit(X, y)
    run.save_model(task, "model.pt")
    run.write_history(task.history_)
    from istn_sk.report import write_run_report

    images = "S2T" if settings.get("adapter") else "images"
    write_run_report(run.path, command="train-task",
                     data={f"train {images} ({site or 'all rows'})": (X, y)})
    click.echo(f"wrote {run.path}")


@click.command("protocol")
@config_options
@data_options("train", "test")
@sites_options
@click.option("--model-type", type=click.Choice(["classifier", "regressor"]),
              help="Task model of the protocol.")
@click.option("--finetune", is_flag=True, help="Fine-tune T_S2T from T_S instead of training "
                                               "it from scratch.")
@estimator_options("stn", "nf", "max_epochs", "batch_size", "lr", "mode", "random_state",
                   "precision")
@quiet_option
@run_options
@click.pass_context
def protocol_command(ctx: click.Context, **_: Any) -> None:
    """Run the paper's whole protocol and write its table.

    Trains T_S on the source site, fits the ISTN, trains T_S2T on S2T, and
    the oracle T_T on the labelled target site; scores each on the
    unmodified target test images (istn_sk.evaluate.domain_shift_report).
    Target labels are read only to score and to train the oracle. Task
    parameters are task__<name> settings. Writes report.csv/.md and
    report.html.
    """
    from istn_sk import ISTNAdapter
    from istn_sk.evaluate import domain_shift_report, to_markdown, write_report
    from istn_sk.report import write_run_report

    adapter_keys = _adapter_keys()
    settings = resolve_settings(ctx, estimator_keys=adapter_keys, prefixes=(TASK_PREFIX,),
                                extra=_extra_settings())
    run = open_run(ctx, settings)
    train, _, sites = _two_sites(settings)
    verbose = _verbose(settings)
    shared = {name: settings[name] for name in (*SHARED_WITH_TASK, "nf") if name in settings}
    task = build_task(settings.get("model_type"), None,
                      {**shared, **_task_params(settings, TASK_PREFIX), "verbose": verbose})
    regression = _is_regressor(task)

    def per_site(images: ImageSet) -> list[tuple[Any, Any]]:
        parts = []
        for site in sites:
            rows, labels = _labelled(images.rows(site_mask(images, settings, site)), settings,
                                     regression=regression)
            parts.append((rows.images(num_workers=settings["num_workers"]), labels))
        return parts

    source, target = per_site(train)
    source_test = target_test = None
    if settings.get("test_set"):
        test = load_image_set(settings["test_set"], settings["test_where"], settings,
                              role="test_set")
        source_test, target_test = per_site(test)
    params = {key: settings[key] for key in adapter_keys if key in settings}
    params["verbose"] = verbose
    table = domain_shift_report(task, ISTNAdapter(**params), source, target,
                                source_test=source_test, target_test=target_test,
                                fine_tune=settings["finetune"],
                                thresholds=settings["thresholds"])
    write_report(table, run.file("report"))
    data = {f"{role} ({site}) train": part for role, site, part in
            zip(("source", "target"), sites, (source, target), strict=True)}
    if source_test is not None:
        data.update({f"{role} ({site}) test": part for role, site, part in
                     zip(("source", "target"), sites, (source_test, target_test), strict=True)})
    write_run_report(run.path, command="protocol", data=data)
    click.echo(to_markdown(table))
    click.echo(f"wrote {run.path}")


class _ReportCommand(click.Command):
    """``report RUN_DIR``; any other option than ``--help`` is the old ``report`` (``protocol``)."""

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        if any(arg.startswith("-") and arg not in ("-h", "--help") for arg in args):
            click.echo("note: `istn-sk report` with the protocol's options is deprecated; use "
                       "`istn-sk protocol` (`istn-sk report RUN_DIR` rebuilds report.html)",
                       err=True)
            return protocol_command.make_context("protocol", args, parent=parent, **extra)
        return super().make_context(info_name, args, parent=parent, **extra)


@click.command("report", cls=_ReportCommand)
@click.argument("run_dir", type=click.Path(file_okay=False))
def report_command(run_dir: str) -> None:
    """Rebuild RUN_DIR/report.html from what a run folder holds.

    RUN_DIR is a folder written by fit, train-task, evaluate or protocol.
    The page is one self-contained HTML file: the settings, the data
    summary, the learning curves, the explanation figures, the protocol
    table, the harmonisation measures and the software versions.
    (Given the protocol's options, as before, this runs `istn-sk protocol`.)
    """
    from pathlib import Path

    from istn_sk.report import is_run_folder, write_run_report

    from ._run import RunFolder

    if not is_run_folder(run_dir):
        what = "does not exist" if not Path(run_dir).exists() else "holds no config.json"
        raise click.ClickException(f"{run_dir} is not an istn-sk run folder ({what})")
    folder = RunFolder(run_dir, force=True)   # refused while a run writes into it
    try:
        click.echo(f"wrote {write_run_report(run_dir)}")
    finally:
        folder.close()
