"""Subject anatomy for the simulated brain MRI: MNI152 tissue maps, warped and aged.

The population template is nilearn's bundled MNI152 2009 (2 mm) T1 image,
grey- and white-matter probability maps and brain mask; CSF is the mask
minus grey and white matter. A subject is a backward map from the output
grid into the template, built from (in order from the scanner inwards) the
scan's placement (see :mod:`._brain_scanner`), a head-size scaling that
depends on sex, a fixed sex-dependent regional shape pattern, a smooth
random deformation and a radial enlargement of the ventricles with age.
Grey matter (and, after 50, white matter) is then partly replaced by CSF
with age, and in mixed grey/white voxels females carry a little more grey
matter than males.

Literature scales used: male intracranial volume about 10% larger than
female (Ruigrok et al., 2014); a higher grey-matter proportion in females
(Gur et al., 1999); grey-matter volume loss about 0.35% a year from age 20
and white-matter loss about 0.3% a year after 50 (Fotenos et al., 2005;
Walhovd et al., 2011); lateral-ventricle volume growing about 2.2% a year,
roughly tripling between 30 and 80 (Fjell et al., 2009).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

TEMPLATE_SPACING = 2.0
CROP_MARGIN = 8
MALE_VOLUME_RATIO = 1.10
HEAD_SCALE_SD = 0.025
SEX_SHAPE_MM = 0.3
SEX_SHAPE_SEED = 20240605
SEX_GM_SHIFT = 0.3
RANDOM_FIELD_MM = 2.0
CONTROL_POINTS = 6
GM_LOSS_PER_YEAR = 0.0035
WM_LOSS_PER_YEAR = 0.003
WM_LOSS_ONSET = 50.0
VENTRICLE_GROWTH_PER_YEAR = 0.022
VENTRICLE_SIZE_SD = 0.25
REFERENCE_AGE = 50.0


@dataclass(frozen=True)
class Template:
    """The MNI152 template resampled for one output shape.

    Attributes
    ----------
    maps : ndarray of float32, shape (4, X, Y, Z)
        Grey matter, white matter, CSF and brain mask at 2 mm, lightly smoothed.
    texture : ndarray of float32, shape (X, Y, Z)
        T1 template intensity over what its tissue mixture predicts, clipped
        to [0.8, 1.2]: the anatomical detail the probability maps miss.
    template_affine : ndarray, shape (4, 4)
        Voxel-to-MNI affine of the 2 mm maps.
    affine : ndarray, shape (4, 4)
        Voxel-to-MNI affine of the output grid: the brain's bounding box
        (plus a margin) divided into ``shape`` voxels.
    shape : tuple of int
        Output grid shape.
    world : ndarray of float64, shape (3, prod(shape))
        MNI coordinates (mm) of the output voxel centres.
    centre : ndarray, shape (3,)
        Centroid of the brain mask (mm).
    ventricle_centre : ndarray, shape (3,)
        Centroid of the deep CSF (mm).
    ventricle_sd : ndarray, shape (3,)
        Spread of the deep CSF along each axis (mm).
    """

    maps: np.ndarray
    texture: np.ndarray
    template_affine: np.ndarray
    affine: np.ndarray
    shape: tuple[int, int, int]
    world: np.ndarray
    centre: np.ndarray
    ventricle_centre: np.ndarray
    ventricle_sd: np.ndarray


def _to_world(affine: np.ndarray, voxels: np.ndarray) -> np.ndarray:
    return affine[:3, :3] @ voxels + affine[:3, 3:4]


@functools.lru_cache(maxsize=4)
def load_template(shape: tuple[int, int, int]) -> Template:
    """Load the MNI152 maps from nilearn's wheel (offline) and set up the output grid."""
    from nilearn import datasets

    gm_image = datasets.load_mni152_gm_template(resolution=2)
    gm = gm_image.get_fdata()
    wm = datasets.load_mni152_wm_template(resolution=2).get_fdata()
    mask = datasets.load_mni152_brain_mask(resolution=2).get_fdata() > 0.5
    t1 = datasets.load_mni152_template(resolution=2).get_fdata()
    gm = np.clip(gm, 0, 1) * mask
    wm = np.clip(wm, 0, 1) * mask
    total = np.maximum(gm + wm, 1.0)
    gm, wm = gm / total, wm / total
    csf = np.clip(mask - gm - wm, 0, 1)
    mixture = np.stack([gm[mask], wm[mask], csf[mask]], axis=1)
    weights, *_ = np.linalg.lstsq(mixture, t1[mask], rcond=None)
    predicted = np.tensordot(weights, np.stack([gm, wm, csf]), axes=1)
    texture = np.ones_like(t1)
    texture[mask] = np.clip(t1[mask] / np.maximum(predicted[mask], 1e-3), 0.8, 1.2)
    maps = np.stack([gm, wm, csf, mask.astype(float)])
    maps = ndimage.gaussian_filter(maps, sigma=(0, 0.5, 0.5, 0.5)).astype(np.float32)

    template_affine = gm_image.affine.copy()
    inside = np.argwhere(mask)
    low = np.maximum(inside.min(axis=0) - CROP_MARGIN, 0)
    high = np.minimum(inside.max(axis=0) + 1 + CROP_MARGIN, mask.shape)
    step = (high - low) / np.asarray(shape)
    grid_to_template = np.eye(4)
    grid_to_template[:3, :3] = np.diag(step)
    grid_to_template[:3, 3] = low - 0.5 + 0.5 * step
    affine = template_affine @ grid_to_template
    voxels = np.indices(shape, dtype=float).reshape(3, -1)

    distance = ndimage.distance_transform_edt(mask) * TEMPLATE_SPACING
    deep_csf = np.argwhere((csf > 0.5) & (distance > 20.0)).T.astype(float)
    ventricles = _to_world(template_affine, deep_csf)
    brain = _to_world(template_affine, inside.T.astype(float))
    return Template(
        maps=maps,
        texture=ndimage.gaussian_filter(texture, 0.5).astype(np.float32),
        template_affine=template_affine,
        affine=affine,
        shape=tuple(int(s) for s in shape),
        world=_to_world(affine, voxels),
        centre=brain.mean(axis=1),
        ventricle_centre=ventricles.mean(axis=1),
        ventricle_sd=ventricles.std(axis=1),
    )


@dataclass(frozen=True)
class Subject:
    """Anatomical parameters of one simulated subject.

    Attributes
    ----------
    age : float
        Years.
    sex : int
        0 female, 1 male.
    head_scale : float
        Linear scale of the head relative to the template.
    ventricle_scale : float
        Linear scale of the ventricles relative to the template.
    field : ndarray, shape (3, CONTROL_POINTS, CONTROL_POINTS, CONTROL_POINTS)
        Control-point displacements (mm) of the smooth random deformation.
    """

    age: float
    sex: int
    head_scale: float
    ventricle_scale: float
    field: np.ndarray

    @property
    def sex_sign(self) -> float:
        """+1 for males, -1 for females."""
        return 1.0 if self.sex == 1 else -1.0


def draw_subject(age: float, sex: int, rng: np.random.Generator) -> Subject:
    """Draw the individual anatomy of a subject of given age and sex."""
    sex_ratio = MALE_VOLUME_RATIO ** (1 / 6 if sex == 1 else -1 / 6)
    head_scale = sex_ratio * np.exp(rng.normal(0.0, HEAD_SCALE_SD))
    ventricle_volume = np.exp(
        VENTRICLE_GROWTH_PER_YEAR * (age - REFERENCE_AGE) + rng.normal(0.0, VENTRICLE_SIZE_SD)
    )
    field = rng.normal(0.0, RANDOM_FIELD_MM, size=(3, *(CONTROL_POINTS,) * 3))
    ventricle_scale = float(ventricle_volume ** (1 / 3))
    return Subject(float(age), int(sex), float(head_scale), ventricle_scale, field)


@functools.lru_cache(maxsize=1)
def _sex_pattern() -> np.ndarray:
    """A fixed smooth displacement pattern (mm) that males follow and females oppose."""
    rng = np.random.default_rng(SEX_SHAPE_SEED)
    pattern = rng.normal(0.0, 1.0, size=(3, *(CONTROL_POINTS,) * 3))
    return SEX_SHAPE_MM * pattern / pattern.std()


def _control_field(field: np.ndarray, points: np.ndarray, template: Template) -> np.ndarray:
    """Cubic interpolation of control-point displacements at MNI points (mm)."""
    extent = np.abs(np.diag(template.affine)[:3]) * np.asarray(template.shape)
    origin = template.centre - extent / 2
    coords = (points - origin[:, None]) / extent[:, None] * (CONTROL_POINTS - 1)
    return np.stack(
        [ndimage.map_coordinates(component, coords, order=3, mode="nearest") for component in field]
    )


def tissue_maps(
    subject: Subject, template: Template, matrix: np.ndarray, translation: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Warp the template into a subject seen by a scanner.

    Parameters
    ----------
    subject : Subject
    template : Template
    matrix : ndarray, shape (3, 3)
        Linear head-to-image map about the brain centre (orientation, scale).
    translation : ndarray, shape (3,)
        Head position offset (mm).

    Returns
    -------
    tissues : ndarray of float32, shape (3, *shape)
        Grey matter, white matter and CSF fractions on the output grid.
    mask : ndarray of bool, shape (*shape)
        Brain mask.
    texture : ndarray of float32, shape (*shape)
        Template texture on the output grid.
    """
    centre = template.centre[:, None]
    points = np.linalg.solve(matrix, template.world - centre - translation[:, None]) + centre
    points = centre + (points - centre) / subject.head_scale
    field = subject.sex_sign * _sex_pattern() + subject.field
    points = points - _control_field(field, points, template)
    ventricle = template.ventricle_centre[:, None]
    spread = 2.0 * template.ventricle_sd[:, None]
    weight = np.exp(-0.5 * (((points - ventricle) / spread) ** 2).sum(axis=0))
    points = ventricle + (points - ventricle) * (1 - (1 - 1 / subject.ventricle_scale) * weight)
    inverse = np.linalg.inv(template.template_affine)
    voxels = inverse[:3, :3] @ points + inverse[:3, 3:4]
    sampled = [
        ndimage.map_coordinates(volume, voxels, order=1, mode="constant").reshape(template.shape)
        for volume in (*template.maps, template.texture)
    ]
    gm, wm, csf, mask, texture = sampled
    gm_loss = GM_LOSS_PER_YEAR * max(subject.age - 20.0, 0.0)
    wm_loss = WM_LOSS_PER_YEAR * max(subject.age - WM_LOSS_ONSET, 0.0)
    csf = csf + gm * gm_loss + wm * wm_loss
    exchanged = SEX_GM_SHIFT * subject.sex_sign * gm * wm
    gm, wm = gm - exchanged, wm + exchanged
    tissues = np.stack([gm * (1 - gm_loss), wm * (1 - wm_loss), csf]).astype(np.float32)
    return tissues, mask >= 0.5, texture.astype(np.float32)
