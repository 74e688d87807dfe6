"""istn-sk: image-level domain adaptation with image-and-spatial transformer networks.

Public API
----------
ISTNAdapter
    scikit-learn transformer mapping source-site images to the target site.
TaskClassifier, TaskRegressor, TaskNetwork
    skorch task estimators trained on labelled source rows (chain after the adapter).
istn_sk.evaluate, istn_sk.model_selection, istn_sk.scoring, istn_sk.figures
    The protocol table, cross-site splitting, label-free scorers, pictures.
make_shifted_shapes
    A synthetic two-site image set with a known shift.
ZScoreNormaliser, WhiteStripeNormaliser, NyulNormaliser, ComBatHarmoniser
    Classical harmonisation baselines (``istn_sk.normalisation``).
save_model, load_model
    Model files holding tensors and plain data only (loaded with weights_only=True).
export
    A fitted network for deployment: ONNX, safetensors weights or TorchScript.
TrainingInterrupted
    Raised (a SystemExit, status 130/143) when SIGINT/SIGTERM stops a checkpointed fit.
hookimpl, get_registry, Registry, Register, Entry, PluginError
    The plugin registry (STN types, losses, datasets).

Names are imported on first use, so ``istn-sk --help`` and plugin discovery
do not pay for importing torch.
"""

from ._lazy import lazy_exports
from ._version import __version__

_PUBLIC = {
    "Entry": "._registry",
    "ISTNAdapter": "._adapter",
    "TaskClassifier": "._task",
    "TaskNetwork": "._task",
    "TaskRegressor": "._task",
    "TrainingInterrupted": "._interrupt",
    "export": "._export",
    "PluginError": "._registry",
    "Register": "._registry",
    "Registry": "._registry",
    "get_registry": "._registry",
    "hookimpl": ".hookspecs",
    "load_model": "._persistence",
    "save_model": "._persistence",
    "make_shifted_shapes": "._synthetic",
    "ComBatHarmoniser": ".normalisation",
    "NyulNormaliser": ".normalisation",
    "WhiteStripeNormaliser": ".normalisation",
    "ZScoreNormaliser": ".normalisation",
}

__all__ = [*sorted(_PUBLIC), "__version__"]


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC, globals())
