"""Files in and out: manifests, images, a lazy Dataset, config files, pictures.

What the ``istn-sk`` command line reads and writes, usable from Python too.

Public API
----------
read_manifest, files_manifest, Manifest
    TSV/CSV manifests (image paths relative to the manifest, labels, sites,
    masks), folders of images and lists of files as one table.
read_image, write_image, write_displacement, image_shape, Normalizer
    NIfTI and MGH volumes (nibabel), NRRD and MetaImage volumes (SimpleITK,
    extra ``istn-sk[sitk]``), DICOM series folders (pydicom, extra
    ``istn-sk[dicom]``), PNG, JPEG, BMP (Pillow) and TIFF (tifffile) images
    as ``(C, *spatial)`` float arrays; volume outputs keep the input's
    affine and header, PNG and TIFF outputs its bit depth.
read_volume, volume_header
    A volume and its voxel-to-world affine (RAS+ mm), or its shape and
    affine from the header only.
harmonise_geometry, Geometry
    Reorient volumes to RAS+ and, on request, resample them to a common
    voxel size and shape, with a record of what was done.
ImageDataset, SampleDataset, iter_batches, load_images
    Torch Datasets that read images on demand (from files, or from dict
    samples through a transform such as a MONAI ``Compose``), and batch reading.
read_config, canonical_config, parse_value, REFERENCE_KEYS, REFERENCE_ALIASES
    JSON/YAML config files with the reference code's keys.
learning_curves, protocol_bars, LOSS_KEYS
    Learning curves and protocol results (mean ± sd over seeds) as
    matplotlib figures.
SampleWriter, EpochScores
    skorch callbacks: sample S2T images and task scores every few epochs.

Names are imported on first use, so importing this package does not
import torch.
"""

from .._lazy import lazy_exports

_PUBLIC = {
    "EpochScores": "._callbacks",
    "Geometry": "._geometry",
    "harmonise_geometry": "._geometry",
    "read_volume": "._images",
    "volume_header": "._images",
    "LOSS_KEYS": "._plot",
    "ImageDataset": "._dataset",
    "Manifest": "._manifest",
    "Normalizer": "._images",
    "REFERENCE_ALIASES": "._config",
    "REFERENCE_KEYS": "._config",
    "SampleWriter": "._callbacks",
    "SampleDataset": "._dataset",
    "canonical_config": "._config",
    "files_manifest": "._manifest",
    "image_shape": "._images",
    "iter_batches": "._dataset",
    "learning_curves": "._plot",
    "load_images": "._dataset",
    "parse_value": "._config",
    "protocol_bars": "._plot",
    "read_config": "._config",
    "read_image": "._images",
    "read_manifest": "._manifest",
    "write_displacement": "._images",
    "write_image": "._images",
}

__all__ = sorted(_PUBLIC)


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC, globals())
