"""``transform``, ``predict`` and ``evaluate``: the commands that apply fitted models."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from ._data import ImageSet, load_image_set
from ._run import open_run
from ._settings import (
    KEY_VALUE,
    check_num_classes,
    config_options,
    data_options,
    image_options,
    option_group,
    quiet_option,
    resolve_settings,
    run_options,
)

adapter_option = click.option(
    "--adapter", type=click.Path(dir_okay=False),
    help="A fitted adapter (.pt) from `istn-sk fit` (config: itn_path/stn_path).")
batch_size_option = click.option("--batch-size", type=click.IntRange(min=1), default=16,
                                 show_default=True, help="Images per batch.")


def _load(path: str, kind: str, device: str):
    """A saved estimator of ``kind`` (``"adapter"`` or ``"task"``), moved to ``device``."""
    from istn_sk import ISTNAdapter, TaskClassifier, TaskRegressor, load_model

    model = load_model(path)
    expected = ISTNAdapter if kind == "adapter" else (TaskClassifier, TaskRegressor)
    if not isinstance(model, expected):
        raise ValueError(f"{path} holds a {type(model).__name__}, not "
                         f"{'an ISTNAdapter' if kind == 'adapter' else 'a task model'}")
    getattr(model, "net_", model).module_.to(device)
    return model.set_params(device=device)


def _apply_adapter(adapter, images, *, itn: bool, stn: bool, direction: str):
    """The images after the ISTN's ITN and/or STN (``--itn``/``--stn``).

    ``--stn`` alone warps the unmodified images with the deformation the ISTN
    computes (from its ITN's output).
    """
    if itn and stn:
        return (adapter.transform(images) if direction == "s2t"
                else adapter.inverse_transform(images))
    parts = adapter.explain(images, direction=direction)
    if itn:
        return parts["appearance"]
    import torch

    warp = adapter.net_.module_[direction].warp
    with torch.no_grad():
        return warp(torch.from_numpy(parts["input"]),
                    torch.from_numpy(parts["displacement"])).numpy()


def _inputs(settings: Mapping[str, Any]) -> ImageSet:
    """One manifest, folder or dataset, or several image files."""
    from istn_sk.io import files_manifest
    from istn_sk.io._images import IMAGE_SUFFIXES

    inputs = list(settings["inputs"])
    if not inputs:
        raise ValueError("give the images to transform: files, a folder, a manifest or a "
                         "registered dataset name")
    if len(inputs) == 1 and not inputs[0].lower().endswith(IMAGE_SUFFIXES):
        return load_image_set(inputs[0], settings["where"], settings, role="inputs")
    if settings["where"]:
        raise ValueError("--where filters a manifest, not a list of image files")
    manifest = files_manifest(inputs, image_key=settings["image_key"])
    return ImageSet(manifest.table, "the image files", manifest=manifest,
                    normalizer=settings["normalizer"])


@click.command("transform")
@click.argument("inputs", nargs=-1)
@config_options
@adapter_option
@click.option("--where", multiple=True, type=KEY_VALUE,
              help="Keep the manifest's rows whose COLUMN equals VALUE (repeatable).")
@image_options
@click.option("--difference", is_flag=True,
              help="Also write S2T - S (NIfTI/MGH in stored units; for raster inputs a PNG "
                   "picture: blue darker, red brighter).")
@click.option("--displacement", is_flag=True,
              help="Also write the deformation field in voxels (NIfTI vector image; for raster "
                   "inputs a .npy array and a warped-grid .png).")
@click.option("--b2a", is_flag=True,
              help="Map T -> S with the inverse ISTN (adapters fitted with mode=cyclegan).")
@batch_size_option
@quiet_option
@run_options
@click.pass_context
def transform_command(ctx: click.Context, **_: Any) -> None:
    """Apply a fitted adapter to images (S -> S2T) and write them in their input format.

    INPUTS are image files (NIfTI, MGH, PNG, JPEG, TIFF, BMP), or one folder,
    manifest or registered dataset. Outputs mirror the inputs' relative paths
    under --out/images; NIfTI and MGH outputs keep the input's affine and
    header, PNG and TIFF outputs its bit depth. --out/manifest.tsv
    lists them (with the input's other columns), ready for `istn-sk
    train-task`.
    """
    from istn_sk._progress import Progress
    from istn_sk.figures import central_slice, deformation_grid, signed, write_png
    from istn_sk.io import Normalizer, write_displacement, write_image
    from istn_sk.io._images import VOLUME_FORMATS, image_format

    settings = resolve_settings(ctx)
    if not settings.get("adapter"):
        raise ValueError("--adapter is required (the adapter.pt written by `istn-sk fit`)")
    run = open_run(ctx, settings)
    adapter = _load(settings["adapter"], "adapter", settings["device"])
    images = _inputs(settings)
    direction = "t2s" if settings["b2a"] else "s2t"
    names, suffixes, files = images.output_names(), images.output_suffixes(), images.files()
    normalizer = Normalizer(settings["normalizer"])
    written: dict[str, list[str]] = {"image": [], "difference": [], "displacement": []}
    progress = Progress(len(images), desc="transform", unit="images", quiet=settings["quiet"])
    for batch, rows in images.batches(batch_size=settings["batch_size"],
                                      num_workers=settings["num_workers"]):
        progress.update(len(rows))
        parts = adapter.explain(batch, direction=direction)
        if not written["image"]:
            run.write_explanation({key: value[:8] for key, value in parts.items()})
        for j, i in enumerate(rows):
            raster = image_format(suffixes[i]) not in VOLUME_FORMATS
            like = None if files is None else files[i]
            output = normalizer.inverse(parts["output"][j])
            stem, path = names[i], f"{names[i]}{suffixes[i]}"
            write_image(run.file("images", path), output, like=like)
            written["image"].append(f"images/{path}")
            if settings["difference"]:
                target = f"{stem}.png" if raster else path
                if raster:
                    shown = central_slice(parts["difference"][j][None])
                    write_png(run.file("difference", target), signed(shown)[0])
                else:
                    write_image(run.file("difference", target),
                                output - normalizer.inverse(parts["input"][j]), like=like)
                written["difference"].append(f"difference/{target}")
            if settings["displacement"]:
                field = parts["displacement"][j]
                if raster:
                    write_png(run.file("displacement", f"{stem}.png"),
                              deformation_grid(field[None])[0])
                    target = f"{stem}.npy"
                else:
                    target = path if image_format(path) == "nifti" else f"{stem}.nii.gz"
                write_displacement(run.file("displacement", target), field, like=like)
                written["displacement"].append(f"displacement/{target}")
    progress.close()
    table = images.table.copy()
    table[settings["image_key"]] = written["image"]
    for key in ("difference", "displacement"):
        if written[key]:
            table[key] = written[key]
    if images.manifest is not None and settings.get("mask_key"):
        table[settings["mask_key"]] = [Path(path).resolve().as_posix()
                                       for path in images.manifest.mask_paths]
    table.to_csv(run.file("manifest.tsv"), sep="\t", index=False)
    click.echo(f"wrote {len(table)} images to {run.path / 'images'} "
               f"({'T2S' if settings['b2a'] else 'S2T'}); manifest {run.path / 'manifest.tsv'}")


#: Reference keys of config_inference.json that describe the models: checked against them.
REFERENCE_CHECKS = ("stn", "nf", "cp_spacing", "max_displacement", "image_shape",
                    "num_classes")


def _stn_applied(ctx: click.Context, settings: Mapping[str, Any]) -> bool:
    """``--stn``, or the reference's ``stn`` key: a type applies the STN, 0/false/none not.

    As in the reference's inference.py, the key applies only with an
    adapter (its ``stn_path``); ``--stn`` against ``stn: 0`` is an error.
    """
    flag = settings["apply_stn"]
    key = settings.get("stn")
    if key is None or not settings.get("adapter"):
        return flag
    on = not (key is False or key == 0 or key in ("", "none"))
    from_command_line = ctx.get_parameter_source("apply_stn") in (
        ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    if flag and from_command_line and not on:
        raise ValueError(f"--stn applies the STN, but stn={key!r} in the config switches it "
                         "off (the reference's inference.py lets the config win); drop one")
    return flag or on


def _check_reference_keys(settings: Mapping[str, Any], models: Mapping[str, Any], adapter,
                          *, stn: bool) -> None:
    """The reference's model-describing keys against the loaded models.

    ``nf``, and with a B-spline STN ``cp_spacing`` and ``max_displacement``,
    must be the adapter's; ``stn`` (a type) its STN type; ``num_classes``
    match every task model. Keys with nothing to check (no adapter applied,
    an affine STN) are named in a note.
    """
    from istn_sk import TaskRegressor

    for model in models.values():
        check_num_classes(settings.get("num_classes"),
                          regression=isinstance(model, TaskRegressor),
                          classes=getattr(model, "classes_", ()), where="the task model")
    checked = ["nf"] + (["cp_spacing", "max_displacement"]
                        if adapter is not None and adapter.stn == "bspline" else [])
    if stn and isinstance(settings.get("stn"), str) and settings["stn"] != "none":
        checked.append("stn")
    unused = []
    for key in ("stn", "nf", "cp_spacing", "max_displacement"):
        given = settings.get(key)
        if given is None:
            continue
        if adapter is None or key not in checked:
            if key != "stn":
                unused.append(key)
            continue
        have = getattr(adapter, key)
        if isinstance(given, (list, tuple)):
            have = list(have) if isinstance(have, (list, tuple)) else [have] * len(given)
            given = list(given)
        if given != have:
            raise ValueError(f"{key}={settings[key]!r} in the config, but the adapter "
                             f"{settings['adapter']} has {key}={getattr(adapter, key)!r}")
    if unused:
        click.echo(f"note: {', '.join(unused)}: no effect here (they describe the networks "
                   "of an applied adapter, and are checked against it)", err=True)


inference_options = option_group(
    config_options,
    click.option("--task-model", multiple=True, type=click.Path(dir_okay=False),
                 help="Saved task model(s) (.pt), e.g. T_S and T_S2T (repeatable)."),
    adapter_option,
    click.option("--itn", "apply_itn", is_flag=True,
                 help="Apply the adapter's image transformer (ITN) before the task model."),
    click.option("--stn", "apply_stn", is_flag=True,
                 help="Apply the adapter's spatial transformer (STN) before the task model."),
    click.option("--b2a", is_flag=True, help="Apply the inverse (T -> S) ISTN instead."),
    data_options("test"),
    batch_size_option,
    quiet_option,
    run_options,
    click.pass_context,
)


def _infer(ctx: click.Context, *, evaluate: bool) -> None:
    import numpy as np
    import pandas as pd

    from istn_sk import TaskRegressor
    from istn_sk._progress import Progress
    from istn_sk.evaluate import (
        DEFAULT_THRESHOLDS,
        prediction_scores,
        to_markdown,
        write_report,
    )
    from istn_sk.report import DataSummary, write_run_report

    settings = resolve_settings(ctx, extra={"thresholds": list(DEFAULT_THRESHOLDS),
                                            **dict.fromkeys(REFERENCE_CHECKS)})
    paths = list(settings["task_model"])
    if not paths:
        raise ValueError("--task-model is required (a .pt written by `istn-sk train-task` or "
                         "`istn-sk fit`)")
    itn, stn = settings["apply_itn"], _stn_applied(ctx, settings)
    settings["apply_stn"] = stn
    if settings.get("adapter") and not (itn or stn):
        if ctx.get_parameter_source("adapter") in (ParameterSource.COMMANDLINE,
                                                    ParameterSource.ENVIRONMENT):
            raise ValueError("the adapter is applied with --itn and/or --stn; pass either or "
                             "both")
        # the reference's inference.py: itn_path/stn_path are applied only with --itn/stn
        click.echo(f"note: adapter {settings['adapter']} (itn_path/stn_path) not applied: "
                   "pass --itn, and/or set stn to its type, to apply it", err=True)
        settings["adapter"] = None
    if (itn or stn) and not settings.get("adapter"):
        raise ValueError("--itn/--stn apply an adapter: give --adapter (itn_path/stn_path)")
    run = open_run(ctx, settings)
    names = [f"{Path(path).parent.name}/{Path(path).stem}" for path in paths]
    models = {name: _load(path, "task", settings["device"]) for name, path in
              zip(names if len(set(names)) == len(names) else paths, paths, strict=True)}
    adapter = (_load(settings["adapter"], "adapter", settings["device"])
               if settings.get("adapter") else None)
    test = load_image_set(settings["test_set"], settings["test_where"], settings,
                          role="test_set")
    _check_reference_keys(settings, models, adapter, stn=stn)
    outputs: dict[str, list] = {name: [] for name in models}
    summary, site_of = DataSummary(), None
    if settings["site_key"] in test.table.columns:
        site_of = test.column(settings["site_key"]).astype(str)
    progress = Progress(len(test), desc=ctx.command.name, unit="images", quiet=settings["quiet"])
    for batch, rows in test.batches(batch_size=settings["batch_size"],
                                    num_workers=settings["num_workers"]):
        shape = settings.get("image_shape")
        if shape is not None and tuple(batch.shape[2:]) != tuple(shape):
            raise ValueError(f"input_shape/image_shape is {list(shape)}, but the images of "
                             f"{test.name} have the shape {list(batch.shape[2:])}")
        for site in ["all"] if site_of is None else sorted(set(site_of[rows])):
            summary.add(f"test ({site})",
                        batch if site_of is None else batch[site_of[rows] == site])
        if adapter is not None:
            batch = _apply_adapter(adapter, batch, itn=itn, stn=stn,
                                   direction="t2s" if settings["b2a"] else "s2t")
        for name, model in models.items():
            outputs[name].append(model.predict(batch) if isinstance(model, TaskRegressor)
                                 else model.predict_proba(batch))
        progress.update(len(rows))
    progress.close()
    applied = "+".join(part for part, on in (("itn", itn), ("stn", stn)) if on) or "none"
    frames, scores = [], []
    for name, model in models.items():
        regression = isinstance(model, TaskRegressor)
        result = np.concatenate(outputs[name])
        frame = test.table.copy()
        frame.insert(0, "model", name)
        if regression:
            frame["prediction"] = result
        else:
            frame["prediction"] = model.classes_[result.argmax(axis=1)]
            for k, label in enumerate(model.classes_):
                frame[f"probability_{label}"] = result[:, k]
        frames.append(frame)
        if evaluate:
            labels = test.labels(settings.get("label_key"), regression=regression)
            has_sites = settings["site_key"] in test.table.columns
            sites = test.column(settings["site_key"]).astype(str) if has_sites else None
            for site in ["all"] if sites is None else sorted(set(sites)):
                rows = np.ones(len(test), bool) if sites is None else sites == site
                scores.append({"model": name, "evaluated_on": site, "transform": applied,
                               "n": int(rows.sum()),
                               **prediction_scores(labels[rows],
                                                   frame["prediction"].to_numpy()[rows],
                                                   regression=regression,
                                                   thresholds=settings["thresholds"])})
    pd.concat(frames).to_csv(run.file("predictions.csv"), index=False)
    if evaluate:
        table = pd.DataFrame(scores)
        write_report(table, run.file("evaluation"))
        click.echo(to_markdown(table))
    write_run_report(run.path, command=ctx.command.name, data=summary)
    click.echo(f"wrote {run.path}")


@click.command("predict")
@inference_options
def predict_command(ctx: click.Context, **_: Any) -> None:
    """Predict with saved task models (the reference's inference.py).

    --itn/--stn first apply the adapter's ITN/STN to the images. Writes
    predictions.csv (class probabilities for classifiers) to --out.
    """
    _infer(ctx, evaluate=False)


@click.command("evaluate")
@inference_options
def evaluate_command(ctx: click.Context, **_: Any) -> None:
    """Score saved task models on labelled images, per site: the protocol table.

    Accuracy for classifiers; MAE and threshold accuracies (thresholds) for
    regressors. Prints the table and writes evaluation.csv/.md,
    predictions.csv and report.html to --out.
    """
    _infer(ctx, evaluate=True)
