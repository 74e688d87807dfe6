"""Resumable training: a run killed with SIGKILL resumes and ends as if never interrupted."""

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pytest
import torch
from skorch.callbacks import EarlyStopping, PrintLog

from istn_sk import (
    ISTNAdapter,
    TaskClassifier,
    TaskRegressor,
    TrainingInterrupted,
    make_shifted_shapes,
)
from istn_sk._checkpoint import CHECKPOINT_NAME, fingerprint
from istn_sk._interrupt import signals_deferred, stop_on_signals

PARAMS = dict(stn="bspline", cp_spacing=4, nf=4, batch_size=16, random_state=0)

KILLED_RUN = textwrap.dedent("""
    import sys, time
    from skorch.callbacks import Callback
    from istn_sk import ISTNAdapter, make_shifted_shapes

    class SlowEpochs(Callback):
        def on_epoch_end(self, net, **kwargs):
            time.sleep(0.5)

    X, _, sd = make_shifted_shapes(24, (12, 12), random_state=0)
    ISTNAdapter(checkpoint_dir=sys.argv[1], max_epochs=8, callbacks=[SlowEpochs()],
                **{params}).fit(X, sample_domain=sd)
""").format(params=repr(PARAMS))


@pytest.fixture(scope="module")
def data():
    return make_shifted_shapes(24, (12, 12), random_state=0)


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)   # as in a terminal, even if pytest's is ignored


def _epoch(path):
    return torch.load(path, weights_only=True)["epoch"] if path.exists() else 0


def test_a_killed_run_resumes_and_matches_an_uninterrupted_one(data, tmp_path):
    X, _, sd = data
    path = tmp_path / CHECKPOINT_NAME
    # started outside the checkout, so the installed package is imported, not the source folder
    process = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(tmp_path)],
                               cwd=tempfile.gettempdir())
    deadline = time.monotonic() + 600
    while _epoch(path) < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, f"the training process ended early ({process.returncode})"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = _epoch(path)
    assert 3 <= done < 8, f"the run was killed after {done} epochs"
    resumed = ISTNAdapter(checkpoint_dir=tmp_path, max_epochs=8, **PARAMS).fit(X, sample_domain=sd)
    uninterrupted = ISTNAdapter(max_epochs=8, **PARAMS).fit(X, sample_domain=sd)
    assert len(resumed.history_) == 8 and _epoch(path) == 8
    np.testing.assert_array_equal(resumed.transform(X), uninterrupted.transform(X))
    assert resumed.history_[:, "dis_loss"] == uninterrupted.history_[:, "dis_loss"]
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_exits_cleanly_keeping_the_last_epochs_checkpoint(data, tmp_path, signum):
    X, _, sd = data
    path = tmp_path / CHECKPOINT_NAME
    process = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(tmp_path)],
                               cwd=tempfile.gettempdir(), stderr=subprocess.PIPE, text=True,
                               preexec_fn=_default_sigint)
    deadline = time.monotonic() + 600
    while _epoch(path) < 1 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, f"the training process ended early ({process.returncode})"
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum
    lines = stderr.strip().splitlines()
    done = _epoch(path)
    assert 1 <= done < 8 and "Traceback" not in stderr
    assert lines == [f"ISTNAdapter.fit stopped by {signal.Signals(signum).name} after epoch "
                     f"{done}; the checkpoint is {path}: fit again with the same parameters, "
                     f"data and checkpoint_dir={str(tmp_path)!r} to resume"]
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]
    # the same fit takes it up (max_epochs=done: it only restores what was saved)
    resumed = ISTNAdapter(checkpoint_dir=tmp_path, max_epochs=done, **PARAMS).fit(
        X, sample_domain=sd)
    assert len(resumed.history_) == done


def test_a_signal_during_a_checkpoint_write_waits_for_the_write():
    before = signal.getsignal(signal.SIGTERM)
    steps = []
    with pytest.raises(TrainingInterrupted) as stopped, stop_on_signals():
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
            steps.append("written")
        steps.append("after the write")
    assert steps == ["written"] and stopped.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def _epochs(history):
    """Each epoch's record without its duration and batches."""
    return [{key: value for key, value in epoch.items() if key not in ("dur", "batches")}
            for epoch in history]


def test_a_larger_max_epochs_continues_a_finished_run(data, tmp_path):
    X, _, sd = data
    ISTNAdapter(checkpoint_dir=tmp_path, max_epochs=2, **PARAMS).fit(X, sample_domain=sd)
    continued = ISTNAdapter(checkpoint_dir=tmp_path, max_epochs=4, **PARAMS).fit(
        X, sample_domain=sd)
    straight = ISTNAdapter(max_epochs=4, **PARAMS).fit(X, sample_domain=sd)
    np.testing.assert_array_equal(continued.transform(X), straight.transform(X))
    assert _epochs(continued.history_) == _epochs(straight.history_)   # *_best flags too


def test_early_stopping_resumes_with_its_count_of_epochs_without_improvement(data, tmp_path):
    X, _, sd = data

    def adapter(**kwargs):
        stopping = EarlyStopping(monitor="gan_loss", patience=2, sink=lambda *_: None)
        return ISTNAdapter(max_epochs=12, callbacks=[stopping], **PARAMS, **kwargs)

    straight = adapter().fit(X, sample_domain=sd)
    stopped_at = len(straight.history_)
    misses = [epoch["epoch"] for epoch in straight.history_ if not epoch["gan_loss_best"]]
    resume_at = misses[0] if misses and misses[0] < stopped_at else 2   # resume mid-count
    adapter(checkpoint_dir=tmp_path).set_params(max_epochs=resume_at).fit(X, sample_domain=sd)
    resumed = adapter(checkpoint_dir=tmp_path).fit(X, sample_domain=sd)
    assert _epochs(resumed.history_) == _epochs(straight.history_)
    np.testing.assert_array_equal(resumed.transform(X), straight.transform(X))


def test_a_checkpoint_of_another_fit_is_refused_and_kept(data, tmp_path):
    X, _, sd = data
    ISTNAdapter(checkpoint_dir=tmp_path, max_epochs=1, **PARAMS).fit(X, sample_domain=sd)
    before = (tmp_path / CHECKPOINT_NAME).read_bytes()
    with pytest.raises(ValueError, match="belongs to a fit with other parameters or data"):
        ISTNAdapter(checkpoint_dir=tmp_path, max_epochs=1, **{**PARAMS, "nf": 8}).fit(
            X, sample_domain=sd)
    with pytest.raises(ValueError, match="belongs to a fit with other parameters or data"):
        ISTNAdapter(checkpoint_dir=tmp_path, max_epochs=1, **PARAMS).fit(
            X[::-1], sample_domain=sd[::-1])
    assert (tmp_path / CHECKPOINT_NAME).read_bytes() == before


TASK = dict(lr=1e-3, max_epochs=5)
CHANGED = {
    "lr": dict(lr=0.01),
    "nf": dict(nf=8),
    "stn": dict(stn="affine"),
    "stn_options": dict(stn_options={"max_translation": 0.1}),
    "random_state": dict(random_state=1),
    "mode": dict(mode="cyclegan"),
    "task, as in the issue": dict(task=TaskClassifier(lr=0.1, max_epochs=50, nf=4)),
    "task__lr": dict(task=TaskClassifier(**{**TASK, "lr": 0.1})),
    "task__max_epochs": dict(task=TaskClassifier(**{**TASK, "max_epochs": 50})),
    "task__nf": dict(task=TaskClassifier(**TASK, nf=4)),
    "task__optimizer": dict(task=TaskClassifier(**TASK, optimizer=torch.optim.SGD)),
    "task__criterion": dict(task=TaskClassifier(**TASK, criterion=torch.nn.NLLLoss)),
    "task__module__p_dropout": dict(task=TaskClassifier(**TASK, module__p_dropout=0.1)),
    "task class": dict(task=TaskRegressor(**TASK)),
    "no task": dict(task=None),
}
UNCHANGED = {
    "verbose": dict(verbose=1),
    "device": dict(device="cuda"),
    "max_epochs": dict(max_epochs=99),
    "checkpoint_dir": dict(checkpoint_dir="elsewhere"),
    "callbacks": dict(callbacks=[PrintLog()]),
    "task__verbose": dict(task=TaskClassifier(**TASK, verbose=1)),
    "task__callbacks": dict(task=TaskClassifier(**TASK, callbacks=[PrintLog()])),
}


def _key(data, labels=None, **changes):
    X, y, sd = data
    adapter = ISTNAdapter(**{**PARAMS, "task": TaskClassifier(**TASK), **changes})
    return fingerprint(adapter, X, sd > 0, y[sd > 0] if labels is None else labels)


@pytest.mark.parametrize("name", CHANGED)
def test_every_parameter_change_gives_a_new_key(data, name):
    assert _key(data, **CHANGED[name]) != _key(data)


@pytest.mark.parametrize("name", UNCHANGED)
def test_logging_devices_and_epoch_counts_keep_the_key(data, name):
    assert _key(data, **UNCHANGED[name]) == _key(data)


def test_every_label_change_gives_a_new_key(data):
    _, y, sd = data
    source = y[sd > 0]
    assert _key(data, source) == _key(data)
    for row in range(len(source)):
        relabelled = source.copy()
        relabelled[row] = (relabelled[row] + 1) % 3
        assert _key(data, relabelled) != _key(data)
    assert _key(data, source.astype(str)) != _key(data)


def test_a_fit_with_other_task_parameters_or_labels_is_refused(data, tmp_path):
    X, y, sd = data
    first = dict(checkpoint_dir=tmp_path, max_epochs=1, **PARAMS)
    ISTNAdapter(task=TaskClassifier(**TASK), **first).fit(X, y, sample_domain=sd)
    before = (tmp_path / CHECKPOINT_NAME).read_bytes()
    with pytest.raises(ValueError, match="belongs to a fit with other parameters or data"):
        ISTNAdapter(task=TaskClassifier(lr=0.1, max_epochs=50, nf=4), **first).fit(
            X, y, sample_domain=sd)
    relabelled = np.where(sd > 0, (y + 1) % 3, y)
    with pytest.raises(ValueError, match="belongs to a fit with other parameters or data"):
        ISTNAdapter(task=TaskClassifier(**TASK), **first).fit(X, relabelled, sample_domain=sd)
    target_relabelled = np.where(sd > 0, y, (y + 1) % 3)
    resumed = ISTNAdapter(task=TaskClassifier(**TASK), **{**first, "max_epochs": 2}).fit(
        X, target_relabelled, sample_domain=sd)
    assert len(resumed.history_) == 2
    assert (tmp_path / CHECKPOINT_NAME).read_bytes() != before
