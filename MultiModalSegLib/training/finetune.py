"""``mmseg finetune``: adapt a model package to corrected and uncorrected cases; write a new version.

What the Slicer panel's Fine-tune button runs. Starting from a model package (bundled or a
version in the user's store; it is only read, never modified), the network trains on

* the **labeled** cases (a clinician's corrected segmentations) through the method's
  supervised loss (MAML: mutual learning, Dice + CE on joint and branch outputs; DTC: Dice and
  level-set regression), and
* the **unlabeled** cases through the method's unsupervised term: DTC's dual-task
  consistency, or for MAML the consistency between every modality branch's softmax and the
  joint softmax (see maml_step.py).

Every batch holds labeled samples first, then unlabeled ones (DTC's two-stream batch). The
optimizer is the method's SGD at a tenth of the references' learning rate with a poly decay,
and the consistency ramp-up is scaled to the run's length (FinetuneConfig).

The result is a new version ``<id>/v<N+1>`` in the user model store, made current (or a
package in ``OUTPUT/model`` with ``--no-store``), plus ``OUTPUT/result.json``. Nothing is
written before the last iteration. The commit point is the rename that makes the complete new
version appear (``model_store.add_version``); a SIGTERM/SIGINT before it (during training or
while the version is staged) cancels and writes nothing; one after it no longer cancels: the
run finishes, ``mmseg finetune`` says so in a ``warning`` and exits 0 with its ``result``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from MultiModalSegLib.atomic import atomic_write_json
from MultiModalSegLib.destinations import check_finetune_destinations
from MultiModalSegLib.errors import MultiModalSegError

if TYPE_CHECKING:  # pragma: no cover
    from MultiModalSegLib.datasets import Case
    from MultiModalSegLib.progress import ProgressReporter
    from MultiModalSegLib.training.cancellation import CancellationToken
    from MultiModalSegLib.training.config import FinetuneConfig, TrainingConfig
    from MultiModalSegLib.weights import ModelPackage

RESULT = "result.json"


@dataclass
class FinetuneOutcome:
    """The new version and what the run measured."""

    output: Path
    is_main: bool
    model_id: str
    version: int | None
    folder: Path | None
    source: dict[str, Any]
    iterations: int
    final_losses: dict[str, float]
    seconds: float
    seconds_per_iteration: float | None

    def summary(self) -> dict[str, Any]:
        return {"model": {"id": self.model_id, "version": self.version,
                          "folder": str(self.folder) if self.folder else None},
                "fine_tuned_from": self.source, "iterations": self.iterations, "final_losses": self.final_losses,
                "seconds": round(self.seconds, 2), "seconds_per_iteration": self.seconds_per_iteration,
                "output": str(self.output.resolve()), "result_json": str((self.output / RESULT).resolve())}


def _as_list(specs: str | list[str] | None) -> list[str]:
    if specs is None:
        return []
    if isinstance(specs, (str, Path)):
        return [str(specs)]
    return [str(s) for s in specs]


def _load(specs: list[str]) -> list[Case]:
    from MultiModalSegLib.datasets import load_cases

    cases: list[Case] = []
    for spec in specs:
        cases += load_cases(spec)
    return cases


def check_modality_names(cases: list[Case], package: ModelPackage) -> None:
    """Name modalities the model does not know first: a renamed image is the usual cause of a missing one."""
    known = package.modalities
    for case in cases:
        unknown = [name for name in case.images if name not in known]
        if unknown:
            missing = [name for name in known if name not in case.images]
            hint = f" (it lacks {', '.join(missing)}: rename the image to that name?)" if missing else ""
            raise MultiModalSegError(
                f"Case '{case.case_id}' ({case.source}) has the modality {', '.join(unknown)}, which model "
                f"'{package.id}' does not know{hint}; the model knows {', '.join(known)}. Name each image by one of "
                "those, or leave the extra image out.")


def training_config_for(package: ModelPackage, config: FinetuneConfig, has_unlabeled: bool) -> TrainingConfig:
    """The method's training config with fine-tuning's iterations, learning rate, batch and ramp-up."""
    from MultiModalSegLib.training.config import TrainingConfig

    patch = tuple(config.patch_size) if config.patch_size is not None else package.patch_size
    labeled_batch = config.labeled_batch_size if has_unlabeled else config.batch_size
    training = TrainingConfig.for_method(
        package.method, iterations=config.iterations, batch_size=config.batch_size, labeled_batch_size=labeled_batch,
        patch_size=patch, foreground_fraction=config.foreground_fraction, seed=config.seed,
        deterministic=config.deterministic, device=config.device, amp=config.amp, num_workers=config.num_workers,
        progress_every=config.progress_every, validation_cases=0)
    training.optimizer = dataclasses.replace(training.optimizer, learning_rate=config.learning_rate,
                                             schedule=config.schedule)
    rampup = max(1, round(config.consistency_rampup_fraction * config.iterations))
    training.maml = dataclasses.replace(training.maml, unlabeled_consistency_weight=config.consistency_weight,
                                        consistency_rampup_iterations=rampup)
    training.dtc = dataclasses.replace(training.dtc, consistency=config.consistency_weight,
                                       consistency_rampup_iterations=float(rampup), consistency_rampup_step=1)
    training.validate()
    return training


def finetune(model: str | Path, labeled: str | list[str], unlabeled: str | list[str] | None, output: str | Path,
             config: FinetuneConfig | None = None, *, reporter: ProgressReporter | None = None,
             token: CancellationToken | None = None, command: str | None = None, write_to_store: bool = True,
             store: Path | None = None) -> FinetuneOutcome:
    """Fine-tune ``model`` (id or package folder) and write a new version (see the module docstring).

    Guards (MultiModalSegError with what to do): no labeled case; a labeled case without a label,
    with an empty label, with label values the model does not have, or whose label grid differs
    from its reference image; a case with a modality the model does not know or without one it
    needs. Raises TrainingCancelled on SIGTERM/SIGINT.
    """
    from MultiModalSegLib import model_store
    from MultiModalSegLib.data_plan import DataPlan
    from MultiModalSegLib.datasets import validate_training_cases
    from MultiModalSegLib.destinations import weights_kept_if_save_fails
    from MultiModalSegLib.progress import ProgressReporter
    from MultiModalSegLib.training.cancellation import CancellationToken
    from MultiModalSegLib.training.checkpoint import TrainingState
    from MultiModalSegLib.training.config import FinetuneConfig
    from MultiModalSegLib.training.data import LabelTable, ModalityTable
    from MultiModalSegLib.training.distributed import init_distributed, resolve_device, shutdown_distributed
    from MultiModalSegLib.training.loop import TrainingLoop, check_cancelled
    from MultiModalSegLib.training.package_manifest import model_card, software_versions, utc_now
    from MultiModalSegLib.training.setup import (
        build_optimizer,
        build_step,
        make_batch_loader,
        make_grad_scaler,
        prepare_volumes,
        seed_everything,
        use_channels_last,
    )
    from MultiModalSegLib.weights import load_model_package, save_model_package

    started = time.perf_counter()
    config = config or FinetuneConfig()
    config.validate()
    reporter = reporter or ProgressReporter(quiet=True)
    token = token or CancellationToken()
    output = Path(output)
    check_finetune_destinations(output, store=write_to_store, store_folder=store)  # before loading anything
    labeled_specs, unlabeled_specs = _as_list(labeled), _as_list(unlabeled)
    if not labeled_specs:
        raise MultiModalSegError("Fine-tuning needs labeled cases; pass --labeled with corrected cases.")

    package = load_model_package(model)  # verifies the weights' sha256
    source = {"id": package.id, "version": package.version, "folder": str(package.folder.resolve()),
              "sha256": package.manifest["weights"].get("sha256"), "read_only": package.read_only}
    modalities = ModalityTable.from_manifest(package.manifest)
    labels = LabelTable.from_manifest(package.labels)

    labeled_cases = _load(labeled_specs)
    unlabeled_cases = [dataclasses.replace(c, label=None) for c in _load(unlabeled_specs)]
    if not labeled_cases:
        raise MultiModalSegError("None of the --labeled specs holds a case; fine-tuning needs at least one labeled case.")
    check_modality_names(labeled_cases + unlabeled_cases, package)
    validate_training_cases(labeled_cases, modalities.names, require_label=True, reference=modalities.reference,
                            label_values=labels.values)
    if unlabeled_cases:
        validate_training_cases(unlabeled_cases, modalities.names, require_label=False,
                                reference=modalities.reference)
    training = training_config_for(package, config, has_unlabeled=bool(unlabeled_cases))

    device = resolve_device(training.device)
    context = init_distributed(device)
    try:
        if not context.is_main:
            reporter.quiet = True
        seed_everything(training.seed, training.deterministic)
        reporter.emit("started", verb="finetune", model=package.id, version=package.version, method=package.method,
                      labeled=len(labeled_cases), unlabeled=len(unlabeled_cases), device=str(device),
                      world_size=context.world_size, iterations=training.iterations)
        check_cancelled(token, context, device, 0)
        preprocessing = dict(package.manifest.get("preprocessing") or {})
        # the starting package's plan, unchanged (the new version carries it on): the corrected cases are
        # resampled and normalised exactly as the model's training data and its inputs at inference
        plan = DataPlan.from_manifest(package.manifest)
        labeled_volumes = prepare_volumes(labeled_cases, modalities, preprocessing, training.patch_size, plan)
        unlabeled_volumes = prepare_volumes(unlabeled_cases, modalities, preprocessing, training.patch_size, plan)

        check_cancelled(token, context, device, 0)
        module = package.build_network(device)
        module.train()
        channels_last = use_channels_last(device, config.channels_last)
        if channels_last:
            import torch

            module = module.to(memory_format=torch.channels_last_3d)
        from MultiModalSegLib.training.setup import build_network

        build_network(package.manifest["architecture"], training.patch_size)  # refuses a patch that does not fit
        optimizer = build_optimizer(module, training.optimizer)
        scaler = make_grad_scaler(device, training.amp)
        network = context.wrap(module, device, find_unused_parameters=package.method == "maml")
        batches = make_batch_loader(labeled_volumes, unlabeled_volumes, method=package.method, labels=labels,
                                    patch_size=training.patch_size, batch_size=training.batch_size,
                                    labeled_batch_size=training.effective_labeled_batch_size,
                                    foreground_fraction=training.foreground_fraction, seed=training.seed,
                                    context=context,
                                    num_workers=training.num_workers)
        state = TrainingState(iteration=0, total_iterations=training.iterations, config=training.to_dict(),
                              method=package.method)
        loop = TrainingLoop(network=network, module=module, optimizer=optimizer, step=build_step(training),
                            batches=batches, optimizer_config=training.optimizer, state=state, device=device,
                            context=context, token=token, reporter=reporter, amp=training.amp, grad_scaler=scaler,
                            channels_last=channels_last, progress_every=training.progress_every, stage="finetune")
        state = loop.run()
        token.check(state.iteration)  # a signal during the last iteration still cancels: nothing is written

        version = folder = None
        if context.is_main:
            manifest = {key: value for key, value in package.manifest.items() if key != "weights"}
            manifest["provenance"] = {
                "created": utc_now(), "selection": "last", "command": command,
                "fine_tuned_from": {k: source[k] for k in ("id", "version", "sha256", "folder")},
                "labeled_specs": labeled_specs, "unlabeled_specs": unlabeled_specs,
                "cases": {"labeled": [c.case_id for c in labeled_cases],
                          "unlabeled": [c.case_id for c in unlabeled_cases]},
                "seed": training.seed, "iteration": state.iteration, "iterations": training.iterations,
                "config": {"finetune": config.to_dict(), "training": training.to_dict()},
                "final_losses": state.last_losses, "world_size": context.world_size,
                "trained_on": (package.manifest.get("provenance") or {}).get("data"),
                "software": software_versions(),
            }
            manifest["version"] = package.version + 1
            destination = (store or model_store.user_model_store_dir()) if write_to_store else output / "model"

            def before_commit() -> None:  # the last moment a cancel leaves the store as it was
                token.check(state.iteration, "Fine-tuning", "iteration")

            reporter.progress("saving", 0, 1)
            with weights_kept_if_save_fails(module, lambda: manifest, destination, model_card):
                if write_to_store:
                    written = model_store.add_version(module, manifest, model_card,
                                                      minimum_version=package.version + 1, store=store,
                                                      before_commit=before_commit)
                else:
                    written = save_model_package(module, manifest, output / "model", model_card(manifest),
                                                 before_commit=before_commit)
            version, folder = written.version, written.folder
            reporter.emit("checkpoint", iteration=state.iteration, path=str(folder))
        outcome = FinetuneOutcome(output=output, is_main=context.is_main, model_id=package.id, version=version,
                                  folder=folder, source=source, iterations=state.iteration,
                                  final_losses=state.last_losses, seconds=time.perf_counter() - started,
                                  seconds_per_iteration=loop.seconds_per_iteration)
        if context.is_main:
            atomic_write_json(output / RESULT, {**outcome.summary(), "files": [RESULT]})
        context.barrier()
        return outcome
    finally:
        shutdown_distributed(context)
