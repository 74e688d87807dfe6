"""Faults of the command line: a stopped or killed `fit` resumes; concurrent runs do not clobber.

Every run here is a separate `istn-sk` process, as in use. The stopped runs
slow their epochs down after each checkpoint (test only) so a signal can be
sent while they train; the runs that resume, and the uninterrupted one they
are compared with, are plain `istn-sk fit` processes.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import click
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from istn_sk.cli._resume import CHECKPOINT_NAME as CLI_CHECKPOINT_NAME
from istn_sk.cli._resume import stopped_line
from istn_sk.cli._run import LOCK_NAME, RunFolder
from istn_sk.cli.main import main

from istn_sk import TrainingInterrupted, load_model
from istn_sk._checkpoint import CHECKPOINT_NAME
from istn_sk.io import read_image

CLI = "import sys; from istn_sk.cli.main import main; sys.argv[0] = 'istn-sk'; main()"
SLOW_CLI = textwrap.dedent("""
    import sys, time
    from istn_sk._checkpoint import EpochCheckpoint

    write = EpochCheckpoint.on_epoch_end

    def slowly(self, net, **kwargs):   # test only: time to send a signal mid-run
        write(self, net, **kwargs)
        time.sleep(0.5)

    EpochCheckpoint.on_epoch_end = slowly
    from istn_sk.cli.main import main
    sys.argv[0] = "istn-sk"
    main()
""")
EPOCHS = 6


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)   # as in a terminal, even if pytest's is ignored


def istn_sk(*args, code=CLI):
    """Start ``istn-sk ARGS`` in its own process (outside the checkout: the installed package)."""
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)],
                            cwd=tempfile.gettempdir(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)


def finished(process, timeout=600):
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


@pytest.fixture(scope="module")
def shapes(tmp_path_factory, shapes_manifest):
    """Two sites of 12x12 PNG shapes with labels, train and test splits."""
    return shapes_manifest(tmp_path_factory.mktemp("shapes"), train_of_12=9)


def fit_args(shapes, out):
    return ["fit", "--train-set", shapes, "--train-where", "split=train", "--test-set", shapes,
            "--test-where", "split=test", "--label-key", "label", "--source-site", "A",
            "--target-site", "B", "--model-type", "classifier", "--stn", "bspline", "--set",
            "cp_spacing=[4,4]", "--max-epochs", EPOCHS, "--nf", "2", "--batch-size", "8",
            "--random-state", "0", "-q", "-o", out]


@pytest.fixture(scope="module")
def uninterrupted(shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "uninterrupted"
    code, _, stderr = finished(istn_sk(*fit_args(shapes, out)))
    assert code == 0, stderr
    return out


def _epoch(path):
    try:
        return torch.load(path, weights_only=True)["epoch"]
    except (FileNotFoundError, EOFError, RuntimeError):
        return 0


def _stopped_after(process, checkpoint, epochs):
    deadline = time.monotonic() + 600
    while _epoch(checkpoint) < epochs and time.monotonic() < deadline:
        assert process.poll() is None, f"the run ended early: {process.communicate()}"
        time.sleep(0.05)


def _history(folder):
    table = pd.read_csv(folder / "history.csv")
    return table.drop(columns=[c for c in table.columns if "dur" in c])


def assert_same_run(folder, reference, shapes):
    images = np.stack([read_image(shapes.parent / p)
                       for p in pd.read_csv(shapes, sep="\t")["image"]])
    np.testing.assert_array_equal(load_model(folder / "adapter.pt").transform(images),
                                  load_model(reference / "adapter.pt").transform(images))
    np.testing.assert_array_equal(load_model(folder / "task.pt").predict_proba(images),
                                  load_model(reference / "task.pt").predict_proba(images))
    pd.testing.assert_frame_equal(_history(folder), _history(reference))
    assert len(_history(folder)) == EPOCHS and "valid_accuracy" in _history(folder)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_fit_keeps_its_folder_and_resumes_to_the_uninterrupted_model(
        shapes, uninterrupted, tmp_path, signum):
    run = tmp_path / "run"
    checkpoint = run / CHECKPOINT_NAME
    process = istn_sk(*fit_args(shapes, run), code=SLOW_CLI)
    _stopped_after(process, checkpoint, 1)
    process.send_signal(signum)
    code, _, stderr = finished(process)
    done = _epoch(checkpoint)
    assert code == 128 + signum and 1 <= done < EPOCHS and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        f"istn-sk fit: stopped by {signal.Signals(signum).name} after epoch {done}; the "
        f"checkpoint is {checkpoint}; resume with: istn-sk fit --resume {run}")
    assert sorted(p.name for p in run.iterdir()) == sorted([CHECKPOINT_NAME, "config.json"])
    code, stdout, stderr = finished(istn_sk("fit", "--resume", run))
    assert code == 0, stderr
    assert f"wrote {run}" in stdout
    assert_same_run(run, uninterrupted, shapes)
    assert not checkpoint.exists(), "a finished run's checkpoint is removed"
    assert not (run / LOCK_NAME).exists()


def test_a_killed_fit_resumes_losing_at_most_one_epoch(shapes, uninterrupted, tmp_path):
    run = tmp_path / "run"
    checkpoint = run / CHECKPOINT_NAME
    process = istn_sk(*fit_args(shapes, run), code=SLOW_CLI)
    _stopped_after(process, checkpoint, 2)
    os.kill(process.pid, signal.SIGKILL)
    finished(process)
    done = _epoch(checkpoint)
    assert 2 <= done < EPOCHS and (run / "config.json").is_file()
    assert not (run / "adapter.pt").exists()
    code, _, stderr = finished(istn_sk("fit", "--resume", run, "--num-workers", "1"))
    assert code == 0, stderr
    assert_same_run(run, uninterrupted, shapes)


def test_resume_refuses_what_it_cannot_resume(shapes, uninterrupted, tmp_path):
    def cli(*args):
        return CliRunner().invoke(main, [str(arg) for arg in args])

    again = cli("fit", "--resume", uninterrupted)
    assert again.exit_code == 1 and "that run has finished" in again.output
    other = cli("fit", "--resume", uninterrupted, "--max-epochs", "9", "-o", tmp_path / "x")
    assert other.exit_code == 2
    assert "only --device, --num-workers and -q may be given, not --max-epochs, --out" in (
        other.output)
    (tmp_path / "empty").mkdir()
    empty = cli("fit", "--resume", tmp_path / "empty")
    assert empty.exit_code == 1 and "no config.json there" in empty.output
    assert "Missing option '-o' / '--out'" in cli("fit", "--train-set", shapes).output
    assert CLI_CHECKPOINT_NAME == CHECKPOINT_NAME


def test_config_json_keeps_repeated_where_values(shapes, uninterrupted):
    config = json.loads((uninterrupted / "config.json").read_text())
    assert config["train_where"] == {"split": "train"}
    from istn_sk.cli._run import _jsonable

    assert _jsonable((("split", "train"), ("split", "test"), ("site", "A"))) == {
        "split": ["train", "test"], "site": "A"}


def _transform(shapes, adapter, site, out):
    return istn_sk("transform", shapes, "--where", f"site={site}", "--adapter", adapter,
                   "--difference", "--displacement", "-o", out)


def assert_transformed(folder, shapes, adapter, site):
    table = pd.read_csv(folder / "manifest.tsv", sep="\t")
    assert len(table) == 12 and set(table["site"]) == {site}
    inputs = np.stack([read_image(shapes.parent / f"{site}/{p.rsplit('/', 1)[-1]}")
                       for p in table["image"]])
    written = np.stack([read_image(folder / p) for p in table["image"]])
    np.testing.assert_allclose(written, load_model(adapter).transform(inputs), atol=1 / 255)
    assert all((folder / p).is_file() for p in [*table["difference"], *table["displacement"]])
    assert json.loads((folder / "config.json").read_text())["where"] == {"site": site}
    assert not (folder / LOCK_NAME).exists()


def test_concurrent_transforms_into_one_new_parent_keep_each_others_files(
        shapes, uninterrupted, tmp_path):
    adapter = uninterrupted / "adapter.pt"
    parent = tmp_path / "new" / "parent"
    broken = tmp_path / "broken.tsv"
    pd.DataFrame({"image": ["missing.png"], "site": ["A"]}).to_csv(broken, sep="\t",
                                                                     index=False)
    runs = {site: _transform(shapes, adapter, site, parent / site) for site in "AB"}
    failing = istn_sk("transform", broken, "--adapter", adapter, "-o", parent / "failed")
    code, _, stderr = finished(failing)
    assert code == 1 and "do not exist" in stderr
    for site, process in runs.items():
        code, _, stderr = finished(process)
        assert code == 0, stderr
        assert_transformed(parent / site, shapes, adapter, site)
    assert sorted(p.name for p in parent.iterdir()) == ["A", "B"]


def test_two_transforms_into_one_folder_at_once_one_is_refused(shapes, uninterrupted,
                                                                tmp_path):
    adapter = uninterrupted / "adapter.pt"
    out = tmp_path / "s2t"
    runs = {site: _transform(shapes, adapter, site, out) for site in "AB"}
    results = {site: finished(process) for site, process in runs.items()}
    winners = [site for site, (code, _, _) in results.items() if code == 0]
    assert len(winners) == 1, results
    (loser,) = set(runs) - set(winners)
    code, _, stderr = results[loser]
    assert code == 1 and ("another istn-sk run is writing into" in stderr
                          or "already exists and is not empty" in stderr)
    assert_transformed(out, shapes, adapter, winners[0])
    assert {p.name for p in out.iterdir()} == {"config.json", "images", "difference",
                                               "displacement", "manifest.tsv", "report"}


def test_a_run_folder_is_locked_while_open_and_discards_only_its_own(tmp_path):
    first = RunFolder(tmp_path / "new" / "a", force=False)
    second = RunFolder(tmp_path / "new" / "b", force=False)
    with pytest.raises(FileExistsError, match="another istn-sk run is writing into"):
        RunFolder(tmp_path / "new" / "a", force=True)
    second.file("images", "kept.png").write_bytes(b"png")
    first.discard()
    first.close()
    second.close()
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["b"]
    assert (tmp_path / "new" / "b" / "images" / "kept.png").read_bytes() == b"png"
    again = RunFolder(tmp_path / "new" / "b", force=True)   # released: a new run may enter
    again.discard()
    again.close()
    assert (tmp_path / "new" / "b").is_dir()   # it was not this run's to remove
    last = RunFolder(tmp_path / "new" / "c", force=False)
    second_last = RunFolder(tmp_path / "new" / "c" / "d", force=False)
    second_last.discard()
    second_last.close()
    last.discard()
    last.close()
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["b"]


def test_the_stop_line_says_what_there_is_to_resume(tmp_path):
    run = tmp_path / "run"
    ctx = click.Context(click.Command("fit"))
    ctx.params["out"] = str(run)
    line, error = stopped_line(ctx), TrainingInterrupted(signal.SIGTERM)
    assert line(error) == ("istn-sk fit: stopped by SIGTERM before its run folder was written; "
                           "there is nothing to resume")
    run.mkdir()
    (run / "config.json").write_text("{}")
    resume = f"resume with: istn-sk fit --resume {run}"
    assert line(error) == (f"istn-sk fit: stopped by SIGTERM before the first epoch ended; "
                           f"{resume} (it starts afresh)")
    (run / CHECKPOINT_NAME).write_bytes(b"")   # stopped after training, writing the outputs
    assert line(error) == (f"istn-sk fit: stopped by SIGTERM; the checkpoint is "
                           f"{run / CHECKPOINT_NAME}; {resume}")
