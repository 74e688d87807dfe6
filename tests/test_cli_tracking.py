"""The training commands' progress report, TensorBoard events and MLflow runs; progress of the
commands that read manifests and generate datasets."""

import re

import pytest
from cli_helpers import run

from istn_sk._progress import Progress

TINY = ["--nf", "2", "--batch-size", "8", "--random-state", "0", "--max-epochs", "2"]




@pytest.fixture(scope="module")
def shapes(tmp_path_factory, shapes_manifest):
    return shapes_manifest(tmp_path_factory.mktemp("shapes"), train_of_12=8)


def data(shapes):
    return ["--train-set", shapes, "--train-where", "split=train", "--site-key", "site",
            "--label-key", "label"]


def test_fit_reports_each_epoch_with_its_losses_and_nothing_when_quiet(shapes, tmp_path):
    fit = ["fit", *data(shapes), "--source-site", "A", "--target-site", "B",
           "--model-type", "classifier", *TINY]
    lines = run(*fit, "-o", tmp_path / "loud").output.splitlines()
    epochs = [line for line in lines if line.startswith("fit: ")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"]
    assert all(re.search(r"epochs .*task_loss=[0-9.e+-]+", line) for line in epochs)
    quiet = run(*fit, "-q", "-o", tmp_path / "quiet").output
    assert "epochs" not in quiet and quiet.strip() == f"wrote {tmp_path / 'quiet'}"


def test_train_task_writes_tensorboard_events_with_the_epoch_losses(shapes, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = run("train-task", *data(shapes), "--source-site", "A", "--model-type",
                 "classifier", *TINY, "--tensorboard", tmp_path / "tb", "-o", tmp_path / "run")
    assert "train-task: 2/2 epochs" in result.output
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    losses = events.Scalars("Loss/train_loss")
    assert [event.step for event in losses] == [1, 2]
    assert all(value > 0 for value in (event.value for event in losses))


def test_fit_logs_an_mlflow_run_with_its_settings_and_metrics(shapes, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    run("fit", *data(shapes), "--source-site", "A", "--target-site", "B", *TINY, "-q",
        "--mlflow-uri", uri, "-o", tmp_path / "istn")
    client = MlflowClient(tracking_uri=uri)
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("istn-sk").experiment_id])
    assert mlflow_run.info.run_name == "istn" and mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.tags["istn_sk.command"] == "fit"
    assert mlflow_run.data.params["source_site"] == "A"
    history = client.get_metric_history(mlflow_run.info.run_id, "train_loss")
    assert [metric.step for metric in history] == [1, 2]


def test_a_missing_tracking_package_names_the_extra(shapes, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)   # import fails
    result = run("train-task", *data(shapes), "--source-site", "A", "--model-type",
                 "classifier", *TINY, "--tensorboard", tmp_path / "tb", "-o", tmp_path / "run",
                 ok=False)
    assert result.exit_code == 1
    assert "--tensorboard needs the tensorboard package: pip install 'istn-sk[tracking]'" in (
        result.output)


def test_transform_and_evaluate_report_the_images_done(shapes, tmp_path):
    run("train-task", *data(shapes), "--source-site", "A", "--model-type", "classifier",
        *TINY, "-q", "-o", tmp_path / "task")
    run("fit", *data(shapes), "--source-site", "A", "--target-site", "B", *TINY, "-q",
        "-o", tmp_path / "istn")
    transform = ["transform", shapes, "--adapter", tmp_path / "istn" / "adapter.pt",
                 "--batch-size", "5"]
    lines = run(*transform, "-o", tmp_path / "s2t").output.splitlines()
    n = sum(1 for _ in open(shapes)) - 1
    steps = [line.split()[1] for line in lines if line.startswith("transform: ")]
    assert steps[-1] == f"{n}/{n}" and len(steps) == -(-n // 5)
    assert "transform:" not in run(*transform, "-q", "-o", tmp_path / "quiet").output
    evaluate = run("evaluate", "--task-model", tmp_path / "task" / "model.pt", "--test-set",
                   shapes, "--label-key", "label", "-o", tmp_path / "eval").output
    assert f"evaluate: {n}/{n} images" in evaluate


def test_progress_lines_are_throttled_to_every_twentieth_of_the_total(capsys):
    import sys

    with Progress(100, desc="make", unit="images", stream=sys.stdout) as progress:
        for _ in range(100):
            progress.update()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "make: 5/100 images" and lines[-1] == "make: 100/100 images"
    assert len(lines) == 20
