"""Geometry and image-formation helpers shared by every phantom kind.

The phantoms are drawn in a *phantom frame* that is the ITK/LPS patient frame itself:
``x`` grows toward the patient's left, ``y`` toward posterior, ``z`` toward superior,
all in millimetres. Arrays are in array order ``(z, y, x)`` (see docs/architecture.md),
so every point, radius and spacing here is written ``(z, y, x)`` as well. A phantom
image gets an identity direction, so the frame needs no conversion when it is written.

Everything random takes a ``numpy.random.Generator`` so a case is reproducible from its
seed. Nothing here imports torch (phantoms must stay cheap to import and to run).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

Vec3 = tuple[float, float, float]
Box = tuple[slice, slice, slice]


@dataclass(frozen=True)
class Grid:
    """A voxel grid in the phantom frame: ``shape`` and ``spacing`` in array order, mm.

    ``center`` is the physical position (array order, mm) of the middle of the grid, so
    anatomy placed around the origin of the phantom frame lands in the middle of the image.
    """

    shape: tuple[int, int, int]
    spacing: Vec3
    center: Vec3 = (0.0, 0.0, 0.0)

    @property
    def origin(self) -> Vec3:
        """Physical position (array order, mm) of voxel ``(0, 0, 0)``."""
        return tuple(c - (n - 1) / 2.0 * s for c, n, s in zip(self.center, self.shape, self.spacing))

    def axis(self, axis: int) -> np.ndarray:
        """Physical coordinates (mm) of the voxel centres along one array axis."""
        return (self.origin[axis] + np.arange(self.shape[axis]) * self.spacing[axis]).astype(np.float32)

    def coords(self, box: Box | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable ``(z, y, x)`` coordinate arrays (mm) of the grid or of a sub-box."""
        box = box if box is not None else (slice(None),) * 3
        z = self.axis(0)[box[0]][:, None, None]
        y = self.axis(1)[box[1]][None, :, None]
        x = self.axis(2)[box[2]][None, None, :]
        return z, y, x

    def box(self, low: Vec3, high: Vec3) -> Box | None:
        """Voxel slices covering the physical box ``[low, high]`` (mm), or None if outside."""
        slices = []
        for a in range(3):
            lo = int(np.floor((low[a] - self.origin[a]) / self.spacing[a]))
            hi = int(np.ceil((high[a] - self.origin[a]) / self.spacing[a])) + 1
            lo, hi = max(lo, 0), min(hi, self.shape[a])
            if hi <= lo:
                return None
            slices.append(slice(lo, hi))
        return tuple(slices)  # type: ignore[return-value]

    def index_of(self, point: Vec3) -> tuple[int, int, int]:
        """Nearest voxel index (clipped to the grid) of a physical point."""
        return tuple(
            int(np.clip(round((p - o) / s), 0, n - 1))
            for p, o, s, n in zip(point, self.origin, self.spacing, self.shape)
        )  # type: ignore[return-value]

    def point_of(self, index: tuple[int, int, int]) -> Vec3:
        """Physical position (mm) of a voxel index."""
        return tuple(o + i * s for o, i, s in zip(self.origin, index, self.spacing))  # type: ignore[return-value]


def lps(x: float, y: float, z: float) -> Vec3:
    """A point written the anatomical way (patient left, posterior, superior; mm),
    returned in array order ``(z, y, x)``."""
    return (float(z), float(y), float(x))


def grid_for(
    default_shape: tuple[int, int, int],
    default_spacing: Vec3,
    shape: tuple[int, int, int] | None,
    spacing: Vec3 | None,
    center: Vec3 = (0.0, 0.0, 0.0),
) -> Grid:
    """The grid of a case: a new ``shape`` keeps the default field of view (the spacing
    scales) so small test cases keep the whole anatomy; an explicit ``spacing`` wins."""
    shape = tuple(int(n) for n in (shape or default_shape))
    if spacing is None:
        spacing = tuple(float(s) * d / n for s, d, n in zip(default_spacing, default_shape, shape))
    return Grid(shape=shape, spacing=tuple(float(s) for s in spacing), center=center)  # type: ignore[arg-type]


def rotation_matrix(angles_degrees: Vec3) -> np.ndarray:
    """A 3x3 rotation (array order) from rotations about the z, y and x axes, in degrees."""
    az, ay, ax = np.deg2rad(angles_degrees)
    # Rotation about z mixes (y, x); about y mixes (z, x); about x mixes (z, y).
    rz = np.array([[1, 0, 0], [0, np.cos(az), -np.sin(az)], [0, np.sin(az), np.cos(az)]])
    ry = np.array([[np.cos(ay), 0, -np.sin(ay)], [0, 1, 0], [np.sin(ay), 0, np.cos(ay)]])
    rx = np.array([[np.cos(ax), -np.sin(ax), 0], [np.sin(ax), np.cos(ax), 0], [0, 0, 1]])
    return rz @ ry @ rx


def random_rotation(rng: np.random.Generator, max_degrees: float) -> np.ndarray:
    """A random rotation with each Euler angle uniform in ``[-max_degrees, max_degrees]``."""
    return rotation_matrix(tuple(rng.uniform(-max_degrees, max_degrees, 3)))


def jitter(rng: np.random.Generator, point: Vec3, sd_mm: float | Vec3) -> Vec3:
    """A point moved by a normal random offset (mm), for anatomical variability."""
    return tuple(np.asarray(point, float) + rng.normal(0.0, 1.0, 3) * np.asarray(sd_mm, float))  # type: ignore[return-value]


def case_generators(seed: int, count: int) -> list[np.random.Generator]:
    """Independent random generators of one case (anatomy, fields, noise, ...).

    Drawing anatomy parameters from their own generator keeps a case the same patient at
    any ``shape``: the fields and noise, whose number of draws depends on the grid, come
    from the others.
    """
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(count)]


def smooth_random_field(rng: np.random.Generator, shape: tuple[int, ...], sigma_voxels: float | Vec3) -> np.ndarray:
    """Gaussian-smoothed white noise, zero mean and unit standard deviation (float32).

    ``sigma_voxels`` is the correlation length per axis. Long correlations are drawn on a
    coarse grid and interpolated, which gives the same look at a fraction of the cost.
    """
    sigma = np.broadcast_to(np.asarray(sigma_voxels, dtype=float), (len(shape),))
    factor = np.maximum(1, np.floor(sigma / 2.0)).astype(int)
    coarse_shape = [n if f == 1 else int(np.ceil(n / f)) + 2 for n, f in zip(shape, factor)]
    field = rng.standard_normal(coarse_shape, dtype=np.float32)
    field = ndimage.gaussian_filter(field, sigma / factor, mode="wrap")
    if np.any(factor > 1):
        field = ndimage.zoom(field, [n / c for n, c in zip(shape, coarse_shape)], order=1)
    field = field.astype(np.float32, copy=False)
    field -= field.mean()
    field /= field.std() + 1e-12
    return field


def _interpolate_axis(values: np.ndarray, axis: int, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``values`` along one axis at fractional ``positions``."""
    low = np.clip(np.floor(positions).astype(int), 0, values.shape[axis] - 2)
    weight = (positions - low).astype(np.float32)
    shape = [1] * values.ndim
    shape[axis] = -1
    weight = weight.reshape(shape)
    return np.take(values, low, axis=axis) * (1.0 - weight) + np.take(values, low + 1, axis=axis) * weight


def random_field(rng: np.random.Generator, grid: Grid, correlation_mm: float) -> np.ndarray:
    """A smooth random field (zero mean, unit sd) with ``correlation_mm`` in physical units.

    Fields of 6 mm and more are drawn on a lattice fixed to the field of view and
    interpolated to the voxels, so a case drawn at another ``shape`` (same field of view)
    gets the same field: same organ outlines, same tumour edema. Finer fields (textures)
    are drawn per voxel.
    """
    if correlation_mm < 6.0:
        return smooth_random_field(rng, grid.shape, tuple(correlation_mm / s for s in grid.spacing))
    step = correlation_mm / 2.0
    extents = [n * s for n, s in zip(grid.shape, grid.spacing)]
    lattice_shape = [int(np.ceil(e / step)) + 6 for e in extents]
    field = ndimage.gaussian_filter(rng.standard_normal(lattice_shape, dtype=np.float32), 2.0, mode="wrap")
    field -= field.mean()
    field /= field.std() + 1e-12
    for axis, (n, s, e) in enumerate(zip(grid.shape, grid.spacing, extents)):
        positions = 3.0 + ((np.arange(n) + 0.5) * s) / step  # lattice units from the field of view's edge
        field = _interpolate_axis(field, axis, positions)
    return np.ascontiguousarray(field, dtype=np.float32)


def normalized_radius(
    grid: Grid,
    center: Vec3,
    radii: Vec3,
    rotation: np.ndarray | None = None,
    deformation: np.ndarray | None = None,
    amplitude: float = 0.0,
    reach: float = 1.0,
) -> tuple[Box | None, np.ndarray]:
    """The ellipsoidal radius ``r`` (1 on the surface) of a deformed ellipsoid, in a box.

    ``r < 1`` is inside; ``0.8 < r < 1`` is a shell about 20 % of the radius thick. A
    ``deformation`` field (full grid, unit std) bulges the surface by ``amplitude`` (a
    fraction of the radius). Only the box that can hold ``r < reach`` is computed; the
    box is returned with ``r`` (None and an empty array when it misses the grid).
    """
    bulge = 1.0 + 3.0 * abs(amplitude)
    half = max(radii) * reach * bulge
    box = grid.box(tuple(c - half for c in center), tuple(c + half for c in center))
    if box is None:
        return None, np.zeros((0, 0, 0), np.float32)
    z, y, x = grid.coords(box)
    d = (z - center[0], y - center[1], x - center[2])
    if rotation is None:
        r2 = (d[0] / radii[0]) ** 2 + (d[1] / radii[1]) ** 2 + (d[2] / radii[2]) ** 2
    else:
        r2 = 0.0
        for i in range(3):
            local = rotation[0, i] * d[0] + rotation[1, i] * d[1] + rotation[2, i] * d[2]
            r2 = r2 + (local / radii[i]) ** 2
    r = np.sqrt(np.broadcast_to(r2, tuple(s.stop - s.start for s in box))).astype(np.float32)
    if deformation is not None and amplitude:
        r = r / (1.0 + amplitude * np.clip(deformation[box], -3.0, 3.0))
    return box, r


def deformed_ellipsoid(
    grid: Grid,
    center: Vec3,
    radii: Vec3,
    rotation: np.ndarray | None = None,
    deformation: np.ndarray | None = None,
    amplitude: float = 0.0,
    inside: float = 1.0,
) -> np.ndarray:
    """Full-grid mask of the deformed ellipsoid ``r < inside`` (see normalized_radius)."""
    mask = np.zeros(grid.shape, dtype=bool)
    box, r = normalized_radius(grid, center, radii, rotation, deformation, amplitude, reach=inside)
    if box is not None:
        mask[box] = r < inside
    return mask


def smooth_curve(control_points: np.ndarray, step_mm: float = 2.0) -> np.ndarray:
    """A Catmull-Rom spline through control points (N x 3, mm), sampled every ~step mm."""
    p = np.asarray(control_points, dtype=float)
    if len(p) < 2:
        return p
    padded = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    out = []
    for i in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[i - 1 : i + 3]
        n = max(2, int(np.ceil(np.linalg.norm(p2 - p1) / step_mm)))
        t = np.linspace(0.0, 1.0, n, endpoint=False)[:, None]
        out.append(
            0.5
            * (
                2 * p1
                + (-p0 + p2) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
            )
        )
    out.append(p[-1:])
    return np.vstack(out)


def tube(grid: Grid, points: np.ndarray, radii: float | np.ndarray) -> np.ndarray:
    """Full-grid mask of a tube (vessel, bowel) around a polyline of points (N x 3, mm).

    ``radii`` is one radius, one per point, or a few radii spread evenly along the tube
    (interpolated), so vessels can taper. The distance to each segment is exact, computed
    in the segment's own small box.
    """
    pts = np.asarray(points, dtype=float)
    rad = np.atleast_1d(np.asarray(radii, dtype=float))
    if len(rad) != len(pts):
        rad = np.interp(np.linspace(0.0, 1.0, len(pts)), np.linspace(0.0, 1.0, len(rad)), rad)
    mask = np.zeros(grid.shape, dtype=bool)
    for a, b, ra, rb in zip(pts[:-1], pts[1:], rad[:-1], rad[1:]):
        reach = max(ra, rb)
        box = grid.box(tuple(np.minimum(a, b) - reach), tuple(np.maximum(a, b) + reach))
        if box is None:
            continue
        z, y, x = grid.coords(box)
        ab = b - a
        length2 = float(ab @ ab) or 1e-9
        t = ((z - a[0]) * ab[0] + (y - a[1]) * ab[1] + (x - a[2]) * ab[2]) / length2
        t = np.clip(t, 0.0, 1.0)
        dist2 = (z - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2 + (x - a[2] - t * ab[2]) ** 2
        mask[box] |= dist2 <= (ra + t * (rb - ra)) ** 2
    return mask


def partial_volume_blur(volume: np.ndarray, sigma_voxels: float | Vec3) -> np.ndarray:
    """Gaussian point-spread blur (sigma per axis, voxels): the scanner's resolution,
    which mixes tissues at every boundary the way partial volume does."""
    return ndimage.gaussian_filter(volume, sigma_voxels, mode="nearest").astype(np.float32, copy=False)


def correlated_noise(
    rng: np.random.Generator, shape: tuple[int, ...], sd: float, sigma_voxels: float | Vec3 = 0.0
) -> np.ndarray:
    """Gaussian noise with standard deviation ``sd``, optionally spatially correlated
    (CT reconstruction kernels give noise a grain of about a voxel)."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    if np.any(np.asarray(sigma_voxels) > 0):
        noise = ndimage.gaussian_filter(noise, sigma_voxels, mode="wrap")
        noise /= noise.std() + 1e-12
    return noise * np.float32(sd)


def rician_noise(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude-MR noise: |image + complex Gaussian noise|, biased upward in dark areas."""
    real = image + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    imaginary = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    return np.sqrt(real * real + imaginary * imaginary)


def bias_field(rng: np.random.Generator, shape: tuple[int, ...], sigma_voxels: float | Vec3, strength: float) -> np.ndarray:
    """A smooth multiplicative MR intensity inhomogeneity, ``exp(strength * field)``."""
    return np.exp(np.float32(strength) * smooth_random_field(rng, shape, sigma_voxels)).astype(np.float32)


def to_sitk_image(array: np.ndarray, grid: Grid) -> sitk.Image:
    """A SimpleITK image of an array on ``grid``: spacing and origin converted from array
    order to ITK's (x, y, z); identity direction, i.e. the phantom frame is LPS."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(tuple(float(s) for s in reversed(grid.spacing)))
    image.SetOrigin(tuple(float(o) for o in reversed(grid.origin)))
    image.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return image


def attach_tissue_map(case: dict, tissue: np.ndarray, grid: Grid, names: list[str]) -> dict:
    """Add the tissue map the case was rendered from (``case["tissue"]``, uint8) and the
    name of each code (``case["meta"]["tissue_names"]``): ground truth for every tissue,
    used by tests and for inspecting a phantom."""
    case["tissue"] = to_sitk_image(tissue.astype(np.uint8), grid)
    case["meta"]["tissue_names"] = {int(code): name for code, name in enumerate(names)}
    return case


def sigma_for_mm(fwhm_mm: float | Vec3, spacing: Vec3) -> tuple[float, float, float]:
    """Gaussian sigma in voxels for a full width at half maximum given in mm."""
    fwhm = np.broadcast_to(np.asarray(fwhm_mm, dtype=float), (3,))
    return tuple(float(f / 2.3548 / s) for f, s in zip(fwhm, spacing))  # type: ignore[return-value]
