"""The sizes and budgets of a reproduction run (a *profile*), one per paper.

``full`` is what ``make reproduce`` runs: every arm of both papers for three training seeds on a
2-core CPU, sized so the whole run costs about 3 core-hours (docs/reproduction.md has the
measured seconds per iteration, the short curves the budgets come from and the estimate).
To fit, the phantoms, patches and networks are smaller than the bundled models' and far smaller
than the papers' (:func:`differences` lists them for the report):

* MAML: liver-ct2 phantoms on a 32x80x80 grid (7.5 x 4.48 x 4.48 mm) instead of the phantom's
  48x128x128 (the paper: LiTS-like CT at full resolution); patch 16x48x48 instead of the
  bundled 32x64x64 (nnU-Net plans ~ 80x160x160 for such CT); 4-stage U-Net branches, base 8,
  max 32 filters (the bundled: 5 stages, 8-64; nnU-Net/MAML: 32-320, 16 per MAML branch).
* DTC: atrium-mr phantoms on a 48x64x64 grid (1.67 x 1.75 x 1.75 mm) instead of 80x112x112 at
  1 mm (the LA challenge scans are ~0.625 mm, cropped); patch 32x48x48 instead of 80x112x112;
  VNet base 4 instead of 16 (the bundled model: 8); the batch keeps the reference's shape (DTC
  2 labeled + 2 unlabeled, the supervised arms 2 labeled).

``smoke`` runs every code path (training, evaluation, ensemble, bootstrap, plateau test,
verdicts, figures, markdown) with a few iterations, one seed and a few cases, in minutes.
Iterations are the same for every arm of a paper (one budget per table). A run validates
``validations`` times (the plateau test needs at least 3 validations in the last fifth).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from MultiModalSegLib.errors import MultiModalSegError

MAML_STRIDES = [[1, 2, 2], [2, 2, 2], [2, 2, 2]]  # 4 stages; the first downsampling in-plane only (thick CT slices)

# The references' schedules, which the DTC arms scale to the run length (named settings of training/config.py)
DTC_REFERENCE_ITERATIONS = 6000  # HiLab-git/DTC train_la_dtc.py --max_iterations
DTC_REFERENCE_STEP = 2500  # lr x 0.1 every 2500 iterations
DTC_REFERENCE_RAMP_STAIRS = 40  # sigmoid_rampup(iter_num // 150, 40): 40 stairs of 150 iterations
DTC_STEP_FRACTION = DTC_REFERENCE_STEP / DTC_REFERENCE_ITERATIONS  # optimizer.step_fraction = 0.4167


@dataclass(frozen=True)
class PaperSize:
    """How one paper's arms are trained and tested in a profile."""

    kind: str  # phantom kind
    shape: tuple[int, int, int]  # phantom grid (z, y, x); the field of view is kept, the spacing scales
    patch: tuple[int, int, int]  # (z, y, x)
    architecture: dict[str, Any]  # MAML/U-Net: --architecture overrides; DTC: {"base_filters": n}
    train_cases: int  # training phantoms
    validation_cases: int  # held-out labeled phantoms for the validation curve (the plateau test)
    test_cases: int  # held-out test phantoms
    iterations: int  # every arm of the paper
    labeled_cases: int = 0  # DTC: the labeled part of the training cases (the paper: 16 of 80); MAML: unused
    validations: int = 15  # validations per run: 4 in the last fifth (the plateau test pools the seeds: 12)
    overlap: float = 0.5  # sliding-window overlap at evaluation (nnU-Net's 0.5)

    @property
    def validate_every(self) -> int:
        return max(1, self.iterations // self.validations)

    @property
    def shape_text(self) -> str:
        return "x".join(map(str, self.shape))

    @property
    def patch_text(self) -> str:
        return "x".join(map(str, self.patch))


@dataclass(frozen=True)
class Profile:
    """A run: the training seeds of every arm and each paper's sizes."""

    name: str
    seeds: tuple[int, ...]
    maml: PaperSize
    dtc: PaperSize
    bootstrap: int = 10_000  # resamples of every CI
    description: str = ""

    def paper(self, name: str) -> PaperSize:
        return {"maml": self.maml, "dtc": self.dtc}[name]


MAML_ARCHITECTURE = {"base_filters": 8, "max_filters": 32, "strides": MAML_STRIDES, "deep_supervision": True,
                     "ma_kernel": "reference", "absent_fill": "mean"}

FULL = Profile(
    name="full",
    seeds=(1337, 1338, 1339),
    maml=PaperSize(
        kind="liver-ct2", shape=(32, 80, 80), patch=(16, 48, 48), architecture=MAML_ARCHITECTURE,
        train_cases=30, validation_cases=4, test_cases=20, iterations=1000),
    dtc=PaperSize(
        kind="atrium-mr", shape=(48, 64, 64), patch=(32, 48, 48), architecture={"base_filters": 4},
        train_cases=80, labeled_cases=16, validation_cases=4, test_cases=20, iterations=1200),
    description="every arm of both papers, three training seeds, on a 2-core CPU (about 3 core-hours)",
)

SMOKE = Profile(
    name="smoke",
    seeds=(1337,),
    maml=replace(FULL.maml, shape=(16, 48, 48), patch=(8, 32, 32), train_cases=3, validation_cases=1,
                 test_cases=2, iterations=10, validations=10, overlap=0.25),
    dtc=replace(FULL.dtc, shape=(32, 32, 32), patch=(16, 16, 16), architecture={"base_filters": 2},
                train_cases=6, labeled_cases=2, validation_cases=1, test_cases=2, iterations=10, validations=10,
                overlap=0.25),
    bootstrap=200,
    description="a pipeline check: a few iterations per arm, one seed, two test cases; its numbers mean nothing",
)

PROFILES = {profile.name: profile for profile in (FULL, SMOKE)}


def get_profile(name: str) -> Profile:
    """The profile of that name; a sentence listing the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise MultiModalSegError(f"Unknown profile '{name}'; use one of {', '.join(PROFILES)}.") from None


def _grid(kind: str, shape: tuple[int, int, int]) -> str:
    """``ZxYxX (a x b x c mm)``: the phantom keeps its field of view, so the spacing scales with the grid."""
    from MultiModalSegLib.phantoms import PHANTOM_KINDS

    info = PHANTOM_KINDS[kind]
    spacing = [s * d / n for s, d, n in zip(info.default_spacing, info.default_shape, shape)]
    return f"{'x'.join(map(str, shape))} ({' x '.join(f'{v:.3g}' for v in spacing)} mm)"


def differences(paper: str, size: PaperSize) -> list[str]:
    """How a paper's arms differ from its reference recipe in this profile (printed in the report)."""
    from MultiModalSegLib.phantoms import PHANTOM_KINDS

    default = PHANTOM_KINDS[size.kind].default_shape
    if paper == "maml":
        stages = len(size.architecture.get("strides", [])) + 1
        return [
            f"phantom grid {_grid(size.kind, size.shape)} instead of the phantom's {_grid(size.kind, default)} "
            "(the paper: real two-phase liver CT)",
            f"patch {size.patch_text} (the bundled maml-liver-ct2: 32x64x64; nnU-Net plans larger ones for such CT)",
            f"U-Net branches of {stages} stages with {size.architecture.get('base_filters')}-"
            f"{size.architecture.get('max_filters')} filters (the bundled model: 5 stages, 8-64; MAML's reference: "
            "nnU-Net's plan, 16 base filters per branch)",
            f"{size.iterations} iterations instead of nnU-Net's 250 000 (1000 epochs x 250), the poly schedule over "
            "the run",
            f"{size.train_cases} training cases",
        ]
    step = max(1, round(DTC_STEP_FRACTION * size.iterations))
    return [
        f"phantom grid {_grid(size.kind, size.shape)} instead of the phantom's {_grid(size.kind, default)} (the "
        "paper: LA challenge LGE-MRI)",
        f"patch {size.patch_text} instead of 80x112x112 (z, y, x)",
        f"VNet with {size.architecture.get('base_filters')} base filters instead of 16",
        f"{size.iterations} iterations instead of 6000, the learning-rate steps at {step} and {2 * step} "
        f"(optimizer.step_fraction = 2500/6000) and the consistency ramp's 40 stairs of "
        f"{max(1, size.iterations // DTC_REFERENCE_RAMP_STAIRS)} iterations scaled to the run",
        f"{size.train_cases} training cases of which {size.labeled_cases} labeled (the paper: 80, 16)",
    ]
