"""ONNX export of one network through ``torch.export`` and torch's dynamo-based exporter.

The TorchScript-based exporter (``dynamo=False``) cannot export these
networks: it has no symbolic for ``aten::atanh`` (the ITN's full-range
output) nor ``aten::linalg_matrix_exp``, and its tracer turns the number of
axes the B-spline field reads from a shape into a tensor.
The dynamo exporter lacks two pieces, supplied here:

* ``torch.linalg.matrix_exp`` (the affine STN's rotation) has no ONNX
  operator; it is decomposed into scaling and squaring of the degree-18
  Taylor polynomial, with the degree and norm threshold torch itself uses
  for float32 matrices.
* ``grid_sample`` on volumes (``aten::grid_sampler_3d``) has no translation;
  it becomes ONNX ``GridSample``, which takes volumes from opset 20 on.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

#: GridSample takes 2D images from opset 16 and volumes from opset 20.
OPSET = 20
#: Largest 1-norm at which the degree-18 Taylor polynomial of exp is exact to float32
#: rounding (torch's threshold for float32 in ``linalg.matrix_exp``).
_TAYLOR_DEGREE, _TAYLOR_NORM = 18, 3.010066
#: Squarings the exported graph can apply: 1-norms up to 3.01 * 2**16 (about 2e5).
_MAX_SQUARINGS = 16
_INTERPOLATION = ("linear", "nearest", "cubic")
_PADDING = ("zeros", "border", "reflection")


def matrix_exp(a: torch.Tensor) -> torch.Tensor:
    """``exp(a)`` of square matrices ``(..., k, k)`` from ONNX-exportable operations only.

    Each matrix is scaled by ``2**-s``, with ``s`` the fewest halvings that
    bring its 1-norm to at most 3.01 (at most 16), put through the Taylor
    polynomial of degree 18, and squared ``s`` times. The number of
    squarings is a tensor, so one graph serves every input.
    """
    norm = a.abs().sum(dim=-2).amax(dim=-1)
    squarings = torch.ceil(torch.log2(norm / _TAYLOR_NORM)).clamp(0, _MAX_SQUARINGS)
    scaled = a / torch.exp2(squarings)[..., None, None]
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device).expand_as(a)
    result = eye
    for order in range(_TAYLOR_DEGREE, 0, -1):
        result = eye + scaled @ result / order
    for step in range(_MAX_SQUARINGS):
        result = torch.where((squarings > step)[..., None, None], result @ result, result)
    return result


def _grid_sample(image, grid, interpolation_mode: int, padding_mode: int, align_corners: bool):
    """``aten::grid_sampler_3d`` as ONNX ``GridSample`` (opset 20 reads any number of axes)."""
    from onnxscript import opset20

    return opset20.GridSample(image, grid, align_corners=int(align_corners),
                              mode=_INTERPOLATION[interpolation_mode],
                              padding_mode=_PADDING[padding_mode])


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's notes (skipped torchvision operators, pytree deprecations)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def to_onnx(module: nn.Module, example: torch.Tensor, *, input_name: str, output_name: str,
            metadata: dict[str, str]):
    """An ONNX program computing ``module`` for any batch size.

    Parameters
    ----------
    module : nn.Module
        In eval mode, on the CPU.
    example : tensor
        An input batch of at least 2 images (a batch of 1 would be
        specialised); its other axes are fixed in the graph.
    input_name, output_name : str
        Names of the graph's input and output.
    metadata : dict of str to str
        Written into the model's ``metadata_props``.

    Returns
    -------
    torch.onnx.ONNXProgram
        The batch axis is named ``batch``; save with ``.save(path)``.
    """
    aten = torch.ops.aten
    with _quiet():
        program = torch.export.export(module, (example,),
                                      dynamic_shapes=({0: torch.export.Dim("batch")},),
                                      strict=False)
        decompositions = torch.export.default_decompositions()
        decompositions[aten.linalg_matrix_exp.default] = matrix_exp
        program = program.run_decompositions(decompositions)
        onnx_program = torch.onnx.export(
            program, (example,), input_names=[input_name], output_names=[output_name],
            opset_version=OPSET, dynamo=True, external_data=False, verbose=False,
            custom_translation_table={aten.grid_sampler_3d.default: _grid_sample})
    batch = onnx_program.model.graph.inputs[0].shape[0]
    onnx_program.rename_axes({batch: "batch"})
    onnx_program.model.metadata_props.update(metadata)
    return onnx_program
