"""Imaging a simulated subject at one of the sites, and the paper's pre-processing.

Each site is a 3T MPRAGE protocol (Cam-CAN-like: TR/TE/TI 2250/2.99/900 ms,
flip 9 degrees; UK-Biobank-like: 2000/2.01/880 ms, flip 8 degrees) plus
hidden scanner factors: inversion efficiency, transmit-field (flip-angle)
pattern, receive bias field, resolution (blur), noise level, a vendor
contrast curve, a systematic head-positioning offset and a gradient
calibration error that scales the image geometry. Sites beyond these two
(:func:`get_site`, ``site2``, ``site3``, ...) draw every factor from a fixed
stream, in ranges spanning the two sites' values.

The signal of tissue ``t`` is the simple MPRAGE model
``PD_t * |1 - (1 + k) exp(-TI / T1_t) + exp(-TR / T1_t)| * exp(-TE / T2*_t)``
with inversion efficiency ``k``, times ``sin(flip * B1(x))`` for a smooth
transmit field ``B1``; a voxel mixes its tissues' signals by their fractions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ._brain_anatomy import Template

T1_MS = {"gm": 1350.0, "wm": 850.0, "csf": 4200.0}
T2STAR_MS = {"gm": 60.0, "wm": 50.0, "csf": 400.0}
PROTON_DENSITY = {"gm": 0.80, "wm": 0.70, "csf": 1.00}


@dataclass(frozen=True)
class Site:
    """An MRI site: its published sequence and hidden scanner factors.

    Attributes
    ----------
    name : str
        Identifier used in manifests.
    description : str
        What the site is modelled on.
    tr, te, ti : float
        Repetition, echo and inversion times (ms).
    flip : float
        Nominal readout flip angle (degrees).
    age_range : tuple of float
        Ages of the site's population, drawn uniformly (years).
    inversion_efficiency : float
        Fraction of the magnetisation inverted (hidden).
    transmit : float
        Relative flip-angle excess at the brain centre over its edge (hidden).
    bias : float
        Amplitude of the log receive bias field (hidden).
    bias_direction : tuple of float
        Direction of the site's bias gradient (hidden).
    blur_mm : float
        Gaussian point-spread sigma (mm, hidden).
    noise : float
        Noise sigma relative to the white-matter signal (hidden).
    gamma : float
        Vendor contrast curve ``s -> s ** gamma`` on WM-normalised signal (hidden).
    rotation_offset : tuple of float
        Systematic head rotation (degrees about x, y, z, hidden).
    translation_offset : tuple of float
        Systematic head shift (mm, hidden).
    gradient_scale : float
        Geometric scale of the images from gradient calibration (hidden).
    """

    name: str
    description: str
    tr: float
    te: float
    ti: float
    flip: float
    age_range: tuple[float, float]
    inversion_efficiency: float
    transmit: float
    bias: float
    bias_direction: tuple[float, float, float]
    blur_mm: float
    noise: float
    gamma: float
    rotation_offset: tuple[float, float, float]
    translation_offset: tuple[float, float, float]
    gradient_scale: float


SITES = (
    Site(
        name="camcan",
        description="Cam-CAN-like: Siemens 3T TIM Trio MPRAGE, TR/TE/TI 2250/2.99/900 ms",
        tr=2250.0,
        te=2.99,
        ti=900.0,
        flip=9.0,
        age_range=(30.0, 87.0),
        inversion_efficiency=0.97,
        transmit=0.05,
        bias=0.10,
        bias_direction=(0.3, 1.0, 0.2),
        blur_mm=0.8,
        noise=0.02,
        gamma=1.0,
        rotation_offset=(0.0, 0.0, 0.0),
        translation_offset=(0.0, 0.0, 0.0),
        gradient_scale=1.0,
    ),
    Site(
        name="ukbb",
        description="UK-Biobank-like: Siemens 3T Skyra MPRAGE, TR/TE/TI 2000/2.01/880 ms",
        tr=2000.0,
        te=2.01,
        ti=880.0,
        flip=8.0,
        age_range=(48.0, 71.0),
        inversion_efficiency=0.88,
        transmit=0.15,
        bias=0.20,
        bias_direction=(-0.5, 0.2, 1.0),
        blur_mm=1.5,
        noise=0.04,
        gamma=0.75,
        rotation_offset=(3.0, 0.0, 1.0),
        translation_offset=(0.0, 2.0, -2.0),
        gradient_scale=0.96,
    ),
)
SITE_NAMES = tuple(site.name for site in SITES)
MISALIGNMENT_DEGREES = 1.5
MISALIGNMENT_MM = 1.5
SUBJECT_BIAS = 0.05


def tissue_signal(site: Site, tissue: str) -> float:
    """MPRAGE signal of a tissue at nominal flip angle, before B1 and bias."""
    t1 = T1_MS[tissue]
    recovery = 1 - (1 + site.inversion_efficiency) * np.exp(-site.ti / t1) + np.exp(-site.tr / t1)
    return float(
        PROTON_DENSITY[tissue]
        * abs(recovery)
        * np.exp(-site.te / T2STAR_MS[tissue])
        * np.sin(np.radians(site.flip))
    )


def rotation_matrix(angles_degrees: np.ndarray) -> np.ndarray:
    """Rotation about the x, then y, then z axis."""
    ax, ay, az = np.radians(angles_degrees)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def placement(site: Site, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Head-to-image geometry of one scan: site offset plus jitter, and gradient scale.

    Returns
    -------
    matrix : ndarray, shape (3, 3)
        Rotation (about x, then y, then z) times the site's gradient scale.
    shift : ndarray, shape (3,)
        Translation (mm).
    """
    angles = np.asarray(site.rotation_offset) + rng.normal(0.0, MISALIGNMENT_DEGREES, 3)
    shift = np.asarray(site.translation_offset) + rng.normal(0.0, MISALIGNMENT_MM, 3)
    return site.gradient_scale * rotation_matrix(angles), shift


def _normalised_coordinates(template: Template) -> np.ndarray:
    extent = np.abs(np.diag(template.affine)[:3]) * np.asarray(template.shape)
    relative = (template.world - template.centre[:, None]) / (extent[:, None] / 2)
    return relative.reshape((3, *template.shape))


def scan(
    tissues: np.ndarray,
    texture: np.ndarray,
    template: Template,
    site: Site,
    rng: np.random.Generator,
) -> np.ndarray:
    """Magnitude image of a subject's tissue fractions acquired at ``site``.

    Parameters
    ----------
    tissues : ndarray, shape (3, *shape)
        Grey matter, white matter and CSF fractions.
    texture : ndarray, shape (*shape)
        Multiplicative anatomical detail.
    template : Template
        Gives the grid geometry.
    site : Site
    rng : numpy.random.Generator
        Subject-and-site random stream (bias field and noise).

    Returns
    -------
    ndarray of float32, shape (*shape)
        Signal normalised to the white-matter level, with the site's contrast curve.
    """
    signals = np.array([tissue_signal(site, tissue) for tissue in ("gm", "wm", "csf")])
    image = np.tensordot(signals, tissues, axes=1) * texture
    coords = _normalised_coordinates(template)
    radius2 = np.minimum((coords**2).sum(axis=0), 1.0)
    flip = np.radians(site.flip) * (1 + site.transmit * (1 - radius2))
    image = image * np.sin(flip) / np.sin(np.radians(site.flip))
    voxel_mm = np.abs(np.diag(template.affine)[:3])
    image = ndimage.gaussian_filter(image, sigma=site.blur_mm / voxel_mm)
    direction = np.asarray(site.bias_direction) / np.linalg.norm(site.bias_direction)
    log_bias = site.bias * np.tensordot(direction, coords, axes=1)
    subject_terms = rng.normal(0.0, SUBJECT_BIAS, size=3)
    log_bias = log_bias + np.tensordot(subject_terms, coords**2 - 1 / 3, axes=1)
    image = image * np.exp(log_bias) / signals[1]
    real = image + rng.normal(0.0, site.noise, image.shape)
    imaginary = rng.normal(0.0, site.noise, image.shape)
    magnitude = np.sqrt(real**2 + imaginary**2)
    return (magnitude**site.gamma).astype(np.float32)


def standardise(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The paper's pre-processing: zero mean, unit variance inside the mask, 0 outside."""
    values = image[mask]
    result = np.zeros(image.shape, dtype=np.float32)
    if values.size:
        result[mask] = (values - values.mean()) / max(float(values.std()), 1e-6)
    return result


#: Seed of the scanner factors of sites beyond the first two.
EXTRA_SITE_SEED = 2021
#: Ages of every extra site's population: lower bound drawn in the first range, upper
#: bound in the second, so each contains the travelling subjects' 48-71.
_EXTRA_AGE_BOUNDS = ((30.0, 48.0), (71.0, 87.0))


def _extra_site(index: int) -> Site:
    """Site ``index >= 2``: a 3T MPRAGE protocol with factors drawn from a fixed stream.

    Each factor is drawn uniformly in a range spanning (a little past) the
    values of ``camcan`` and ``ukbb``; the stream depends only on ``index``,
    so site ``k`` is the same whatever number of sites is simulated.
    """
    rng = np.random.default_rng(np.random.SeedSequence([EXTRA_SITE_SEED, index]))

    def draw(low: float, high: float, size: int | None = None):
        values = rng.uniform(low, high, size)
        return float(values) if size is None else tuple(float(v) for v in values)

    tr, te, ti, flip = draw(1900.0, 2400.0), draw(1.9, 3.2), draw(850.0, 950.0), draw(7.0, 10.0)
    return Site(
        name=f"site{index}",
        description=f"simulated 3T MPRAGE site {index}, TR/TE/TI {tr:.0f}/{te:.2f}/{ti:.0f} ms",
        tr=tr,
        te=te,
        ti=ti,
        flip=flip,
        age_range=(float(round(draw(*_EXTRA_AGE_BOUNDS[0]))),
                   float(round(draw(*_EXTRA_AGE_BOUNDS[1])))),
        inversion_efficiency=draw(0.86, 0.98),
        transmit=draw(0.04, 0.18),
        bias=draw(0.08, 0.22),
        bias_direction=draw(-1.0, 1.0, 3),
        blur_mm=draw(0.7, 1.6),
        noise=draw(0.015, 0.045),
        gamma=draw(0.7, 1.1),
        rotation_offset=draw(-3.0, 3.0, 3),
        translation_offset=draw(-2.5, 2.5, 3),
        gradient_scale=draw(0.95, 1.03),
    )


def get_site(index: int) -> Site:
    """Site ``index``: ``SITES[0]``, ``SITES[1]``, then generated sites (``site2``, ...)."""
    return SITES[index] if index < len(SITES) else _extra_site(index)


def site_list(n_sites: int) -> tuple[Site, ...]:
    """The first ``n_sites`` sites (``n_sites >= 2``); the first two are always ``SITES``."""
    return tuple(get_site(index) for index in range(n_sites))


def site_index(name: str) -> int | None:
    """The index of the site called ``name`` (``camcan``, ``ukbb``, ``site<k>``), or None."""
    if name in SITE_NAMES:
        return SITE_NAMES.index(name)
    digits = name[4:] if isinstance(name, str) and name.startswith("site") else ""
    if digits.isdigit() and int(digits) >= len(SITES) and digits == str(int(digits)):
        return int(digits)
    return None
