"""Simulated multi-site 3D brain MRI with sex and age labels: population, files, loaders.

Site ``camcan`` (index 0) draws ages uniformly in 30-87 years, site ``ukbb``
(index 1) in 48-71; with ``n_sites > 2``, sites ``site2``, ``site3``, ... have
their own scanner factors and age ranges containing 48-71
(:func:`~._brain_scanner.get_site`). Sexes are balanced in every prefix of a
site's subjects. Optional travelling subjects (ages 48-71) are imaged at every
site. Every scan has its own random streams, so the data are bit-identical for
a seed whatever ``n_jobs`` is, and the first two sites are the same whatever
``n_sites`` is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._brain_anatomy import draw_subject, load_template, tissue_maps
from ._brain_scanner import Site, get_site, placement, scan, site_list, standardise
from ._brain_scanner import site_index as index_of_site
from ._cache import prepare_out_dir, write_table
from ._parallel import parallel_map

DEFAULT_SHAPE = (64, 64, 64)
MANIFEST = "manifest.tsv"
MANIFEST_COLUMNS = ("id", "subject", "image", "mask", "age", "sex", "site")
SEX_CODES = ("F", "M")
MNI_XFORM_CODE = 4


@dataclass(frozen=True)
class Scan:
    """One image to simulate.

    Attributes
    ----------
    id, subject : str
        Image and subject identifiers (a travelling subject has two images).
    site : int
        Index into the sites.
    age : float
    sex : int
        0 female, 1 male.
    anatomy_key, scan_key : tuple of int
        Entropy of the subject's and of the scan's random streams.
    """

    id: str
    subject: str
    site: int
    age: float
    sex: int
    anatomy_key: tuple[int, ...]
    scan_key: tuple[int, ...]


def _check_shape(shape: int | tuple[int, int, int]) -> tuple[int, int, int]:
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),) * 3
    shape = tuple(shape)
    if len(shape) != 3 or not all(isinstance(s, (int, np.integer)) and s >= 8 for s in shape):
        raise ValueError(f"shape must be an int or three ints, each at least 8; got {shape!r}")
    return tuple(int(s) for s in shape)


def _check_count(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _balanced_sexes(n: int, rng: np.random.Generator) -> np.ndarray:
    blocks = [rng.permutation(2) for _ in range(-(-n // 2))]
    return np.concatenate(blocks)[:n] if blocks else np.zeros(0, dtype=np.int64)


def population(n_per_site: int, travelling_subjects: int, random_state: int,
               n_sites: int = 2) -> list[Scan]:
    """The scans of every site, then of the travelling subjects (one per site each).

    Ages, sexes and random streams are drawn so that the scans for ``n`` are
    the first ones for any larger ``n``, and a site's scans do not depend on
    ``n_sites``.
    """
    n_per_site = _check_count("n_per_site", n_per_site, 1)
    travelling_subjects = _check_count("travelling_subjects", travelling_subjects, 0)
    sites = site_list(_check_count("n_sites", n_sites, 2))
    random_state = int(random_state)
    scans = []
    for site_index, site in enumerate(sites):
        rng = np.random.default_rng(np.random.SeedSequence([random_state, 24, site_index]))
        ages = np.round(rng.uniform(*site.age_range, size=n_per_site), 1)
        rng = np.random.default_rng(np.random.SeedSequence([random_state, 26, site_index]))
        sexes = _balanced_sexes(n_per_site, rng)
        for i in range(n_per_site):
            name = f"{site.name}-{i:04d}"
            scans.append(
                Scan(
                    id=name,
                    subject=name,
                    site=site_index,
                    age=float(ages[i]),
                    sex=int(sexes[i]),
                    anatomy_key=(random_state, 20, site_index, i),
                    scan_key=(random_state, 22, site_index, i),
                )
            )
    low = max(site.age_range[0] for site in sites)
    high = min(site.age_range[1] for site in sites)
    rng = np.random.default_rng(np.random.SeedSequence([random_state, 25]))
    ages = np.round(rng.uniform(low, high, size=travelling_subjects), 1)
    rng = np.random.default_rng(np.random.SeedSequence([random_state, 27]))
    sexes = _balanced_sexes(travelling_subjects, rng)
    for j in range(travelling_subjects):
        subject = f"travel-{j:03d}"
        for site_index, site in enumerate(sites):
            scans.append(
                Scan(
                    id=f"{subject}-{site.name}",
                    subject=subject,
                    site=site_index,
                    age=float(ages[j]),
                    sex=int(sexes[j]),
                    anatomy_key=(random_state, 21, j),
                    scan_key=(random_state, 23, j, site_index),
                )
            )
    return scans


def simulate_scan(spec: Scan, shape: tuple[int, int, int],
                  site: Site | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Simulate and pre-process one scan.

    ``site``, optional: image at this site instead of ``spec.site``'s (e.g. a
    site that differs from another in one scanner factor only).

    Returns
    -------
    image : ndarray of float32, shape ``shape``
        Zero mean and unit variance inside the mask, 0 outside.
    mask : ndarray of bool, shape ``shape``
    """
    template = load_template(shape)
    site = get_site(spec.site) if site is None else site
    subject = draw_subject(
        spec.age, spec.sex, np.random.default_rng(np.random.SeedSequence(spec.anatomy_key))
    )
    rng = np.random.default_rng(np.random.SeedSequence(spec.scan_key))
    matrix, shift = placement(site, rng)
    tissues, mask, texture = tissue_maps(subject, template, matrix, shift)
    image = scan(tissues, texture, template, site, rng)
    return standardise(image, mask), mask


def _as_arrays(scans: list[Scan]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sexes = np.array([spec.sex for spec in scans], dtype=np.int64)
    ages = np.array([spec.age for spec in scans], dtype=np.float64)
    sites = np.array([spec.site for spec in scans], dtype=np.int64)
    return sexes, ages, sites


def simulate_brain_sites(
    n_per_site: int = 100,
    shape: int | tuple[int, int, int] = DEFAULT_SHAPE,
    random_state: int = 0,
    n_jobs: int | None = 1,
    travelling_subjects: int = 0,
    verbose: int = 0,
    n_sites: int = 2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Simulate the multi-site brain MRI data set in memory (two sites by default).

    Parameters
    ----------
    n_per_site : int, default=100
        Subjects per site.
    shape : int or tuple of 3 ints, default=(64, 64, 64)
        Output grid; it spans the MNI152 brain mask's bounding box
        plus 16 mm (within the template's field of view).
    random_state : int, default=0
        The same seed gives bit-identical data, whatever ``n_jobs``.
    n_jobs : int, default=1
        joblib workers.
    travelling_subjects : int, default=0
        Extra subjects, aged 48-71, each imaged at every site (appended last,
        ordered subject by subject, then by site).
    verbose : int, default=0
        Show a progress bar when positive.
    n_sites : int, default=2
        Sites (at least 2): ``camcan``, ``ukbb``, then ``site2``, ``site3``,
        ... each with its own scanner factors (deterministic, whatever the
        seed). Two sites give the same data as before this option existed.

    Returns
    -------
    X : ndarray of float32, shape (n, 1, *shape)
        ``tanh`` of the standardised images: in (-1, 1), 0 outside the brain.
    y_sex : ndarray of int64, shape (n,)
        0 female, 1 male.
    age : ndarray of float64, shape (n,)
        Years.
    site : ndarray of int64, shape (n,)
        0 ``camcan``, 1 ``ukbb``, ``k >= 2`` ``site<k>``.
    """
    shape = _check_shape(shape)
    scans = population(n_per_site, travelling_subjects, random_state, n_sites)
    results = parallel_map(
        simulate_scan,
        [(spec, shape) for spec in scans],
        n_jobs=n_jobs,
        verbose=verbose,
        desc="brain sites",
    )
    X = np.tanh(np.stack([image for image, _ in results]))[:, None].astype(np.float32)
    return (X, *_as_arrays(scans))


def _write_scan(spec: Scan, shape: tuple[int, int, int], out_dir: Path) -> None:
    import nibabel as nib

    image, mask = simulate_scan(spec, shape)
    affine = load_template(shape).affine
    for data, relative in ((image, _image_path(spec)), (mask.astype(np.uint8), _mask_path(spec))):
        nifti = nib.Nifti1Image(data, affine)
        nifti.set_qform(affine, code=MNI_XFORM_CODE)
        nifti.set_sform(affine, code=MNI_XFORM_CODE)
        nib.save(nifti, out_dir / relative)


def _image_path(spec: Scan) -> str:
    return f"images/{spec.id}_T1w.nii.gz"


def _mask_path(spec: Scan) -> str:
    return f"masks/{spec.id}_mask.nii.gz"


def make_brain_sites(
    out_dir: str | os.PathLike[str],
    n_per_site: int = 100,
    shape: int | tuple[int, int, int] = DEFAULT_SHAPE,
    random_state: int = 0,
    n_jobs: int | None = 1,
    travelling_subjects: int = 0,
    verbose: int = 0,
    overwrite: bool = False,
    n_sites: int = 2,
) -> Path:
    """Write the multi-site brain MRI data set as NIfTI files and a TSV manifest.

    Images (``images/<id>_T1w.nii.gz``, float32, standardised inside the
    brain, 0 outside; no ``tanh``) and masks (``masks/<id>_mask.nii.gz``,
    uint8) carry the MNI152 affine scaled to the output voxel size, as qform
    and sform (code 4, MNI). ``manifest.tsv`` has the columns ``id``,
    ``subject``, ``image``, ``mask`` (paths relative to the manifest),
    ``age``, ``sex`` (``F``/``M``) and ``site`` (``camcan``, ``ukbb``, then
    ``site2``, ... with ``n_sites > 2``).

    Parameters
    ----------
    out_dir : path-like
        Destination folder; created if missing, must be empty unless
        ``overwrite`` is True.
    n_per_site, shape, random_state, n_jobs, travelling_subjects, verbose
        As in :func:`simulate_brain_sites`.
    overwrite : bool, default=False
        Write into a non-empty folder, replacing files of the same names.
    n_sites : int, default=2
        As in :func:`simulate_brain_sites`.

    Returns
    -------
    pathlib.Path
        The manifest.

    Raises
    ------
    FileExistsError
        ``out_dir`` is not empty and ``overwrite`` is False.
    """
    import pandas as pd

    shape = _check_shape(shape)
    scans = population(n_per_site, travelling_subjects, random_state, n_sites)
    out_dir = prepare_out_dir(out_dir, overwrite)
    for folder in ("images", "masks"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    parallel_map(
        _write_scan,
        [(spec, shape, out_dir) for spec in scans],
        n_jobs=n_jobs,
        verbose=verbose,
        desc="brain sites",
    )
    table = pd.DataFrame(
        {
            "id": [spec.id for spec in scans],
            "subject": [spec.subject for spec in scans],
            "image": [_image_path(spec) for spec in scans],
            "mask": [_mask_path(spec) for spec in scans],
            "age": [spec.age for spec in scans],
            "sex": [SEX_CODES[spec.sex] for spec in scans],
            "site": [get_site(spec.site).name for spec in scans],
        },
        columns=list(MANIFEST_COLUMNS),
    )
    return write_table(out_dir / MANIFEST, table)


def load_brain_sites(
    manifest_or_dir: str | os.PathLike[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load a data set written by :func:`make_brain_sites`, ready for the networks.

    Parameters
    ----------
    manifest_or_dir : path-like
        ``manifest.tsv`` or the folder holding it.

    Returns
    -------
    X, y_sex, age, site
        As in :func:`simulate_brain_sites`: ``X`` is ``tanh`` of the stored
        standardised images.

    Raises
    ------
    FileNotFoundError
        No manifest.
    ValueError
        Missing columns, unknown site or sex codes, or images of different shapes.
    """
    import nibabel as nib
    import pandas as pd

    manifest = Path(manifest_or_dir)
    if manifest.is_dir():
        manifest = manifest / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"no brain-sites manifest at {manifest}")
    table = pd.read_csv(manifest, sep="\t", dtype={"id": str, "subject": str})
    missing = {"image", "age", "sex", "site"} - set(table.columns)
    if missing:
        raise ValueError(f"{manifest} lacks the columns {sorted(missing)}")
    unknown = {name for name in set(table["site"]) if index_of_site(name) is None}
    if unknown:
        raise ValueError(f"{manifest}: unknown sites {sorted(map(str, unknown))}; known: "
                         "camcan, ukbb and site2, site3, ...")
    unknown = set(table["sex"]) - set(SEX_CODES)
    if unknown:
        raise ValueError(f"{manifest}: unknown sex codes {sorted(unknown)}; known: {SEX_CODES}")
    images = [
        np.asarray(nib.load(manifest.parent / path).dataobj, dtype=np.float32)
        for path in table["image"]
    ]
    if len({image.shape for image in images}) > 1:
        raise ValueError(f"{manifest}: images have different shapes")
    X = np.tanh(np.stack(images))[:, None].astype(np.float32)
    y_sex = table["sex"].map(SEX_CODES.index).to_numpy(np.int64)
    site = table["site"].map(index_of_site).to_numpy(np.int64)
    return X, y_sex, table["age"].to_numpy(np.float64), site
