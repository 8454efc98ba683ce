"""``mmseg train``: cases from a data spec -> model packages (best and last) + a resumable checkpoint.

Output folder::

    OUTPUT/best/         model package of the best validation Dice (absent without validation cases)
    OUTPUT/last/         model package of the latest checkpoint (the final model at the end)
    OUTPUT/checkpoint/   resumable state (safetensors + JSON), see checkpoint.py
    OUTPUT/result.json   what was written, the split, the final losses, every validation

Every one of them is replaced atomically, so a process killed at any moment leaves the last
complete package and checkpoint. ``--resume`` continues from ``OUTPUT/checkpoint`` with the
checkpoint's settings (only the device, the worker count and -- to train longer -- the number of
iterations may change), the same split, the
optimizer state and the RNG states; the batch stream continues at the checkpoint's iteration (batch ``i``
is seeded by seed, rank and ``i``), so on CPU a resumed run ends with the uninterrupted run's weights bit
for bit. Other settings given with ``--resume`` are refused (``resume.py``).

Under torchrun each rank runs this function; rank 0 validates and writes, the others train.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from MultiModalSegLib.atomic import atomic_write_json
from MultiModalSegLib.destinations import OUTPUT_REMEDY, check_writable_folder
from MultiModalSegLib.errors import MultiModalSegError

if TYPE_CHECKING:  # pragma: no cover
    from MultiModalSegLib.data_plan import DataPlan
    from MultiModalSegLib.progress import ProgressReporter
    from MultiModalSegLib.training.cancellation import CancellationToken
    from MultiModalSegLib.training.config import TrainingConfig

BEST = "best"
LAST = "last"
CHECKPOINT = "checkpoint"
RESULT = "result.json"


@dataclass
class TrainingOutcome:
    """What a finished training run wrote and measured."""

    output: Path
    is_main: bool
    iterations: int
    best: Path | None
    last: Path | None
    checkpoint: Path | None
    best_metric: float | None
    best_iteration: int | None
    final_losses: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    seconds_per_iteration: float | None = None
    rank_weight_digests: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "output": str(self.output.resolve()),
            "result_json": str((self.output / RESULT).resolve()),
            "best": str(self.best) if self.best else None,
            "last": str(self.last) if self.last else None,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "iterations": self.iterations,
            "best_metric": self.best_metric,
            "best_iteration": self.best_iteration,
            "final_losses": self.final_losses,
            "seconds": round(self.seconds, 2),
            "seconds_per_iteration": self.seconds_per_iteration,
            "world_size": len(self.rank_weight_digests) or 1,
            "weights_sha256_per_rank": self.rank_weight_digests,
        }


def _prepare_output(output: Path, resume: bool, overwrite: bool, is_main: bool) -> None:
    if resume:
        if not (output / CHECKPOINT).exists() and not any(output.glob(f".{CHECKPOINT}.old-*")):
            raise MultiModalSegError(
                f"--resume was given but {output} holds no checkpoint; run without --resume to start training.")
        if is_main:
            check_writable_folder(output, "output folder", OUTPUT_REMEDY)
        return
    if output.exists() and not output.is_dir():
        raise MultiModalSegError(f"The output {output} is a file; give a folder.")
    if output.is_dir() and any(output.iterdir()):
        if not overwrite:
            raise MultiModalSegError(
                f"The output folder {output} is not empty; pass --resume to continue its training, --overwrite to "
                "start over, or choose a new folder.")
        if is_main:
            for name in (BEST, LAST, CHECKPOINT):
                shutil.rmtree(output / name, ignore_errors=True)
            (output / RESULT).unlink(missing_ok=True)
    if is_main:  # before any data is read: a read-only folder is said now, not after the last iteration
        check_writable_folder(output, "output folder", OUTPUT_REMEDY)


def _default_model_id(method: str, data: str) -> str:
    import re

    if data.startswith("phantom:"):
        source = data[len("phantom:"):].split(":")[0]
    else:
        source = Path(data.rsplit(":", 1)[0] if data.endswith((":train", ":test", ":all")) else data).stem
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{method}-{source}").strip("-")[:100] or method


def _training_plan(config: TrainingConfig, loaded: Any, split: Any, modalities: Any) -> DataPlan | None:
    """The run's data plan: the checkpoint's when resuming (never recomputed), else computed from the training cases.

    Spacings come from every training case (labeled and unlabeled), CT intensity statistics from
    the labeled ones; the validation cases are not looked at. None when ``config.use_plan`` is off
    (the pre-plan behaviour: the input grid and per-image normalisation, kept for comparisons).
    """
    from MultiModalSegLib.data_plan import DataPlan, compute_plan

    if not config.use_plan:
        return None
    from MultiModalSegLib.training.setup import sampling_config

    if loaded is not None:
        stored = loaded.record.get("extra", {}).get("plan")
        return DataPlan.from_dict(stored) if stored else None
    plan = compute_plan(split.labeled + split.unlabeled, modalities.names, modalities.normalization,
                        modalities.reference, config.patch_size, seed=config.seed)
    recipe = sampling_config(config.method, config.patch_size, config.foreground_fraction, config.augmentation)
    plan.mirror_axes = (1, 2) if recipe.rot_flip else tuple(recipe.mirror_axes)
    return plan


def choose_package_postprocessing(output: Path, method: str, held_out: list[Any], label_names: list[str],
                                  patch_size: tuple[int, int, int], device: Any) -> dict[str, Any]:
    """Decide the largest-component post-processing on the validation cases and record it in the packages.

    The best package (else the last) segments every validation volume once; each label keeps only
    its largest component where that raises its mean validation Dice
    (:func:`~MultiModalSegLib.postprocessing.choose_largest_component`). The choice is written into
    the ``plan`` of ``best/`` and ``last/`` (their weights are untouched).
    """
    from MultiModalSegLib.postprocessing import choose_largest_component
    from MultiModalSegLib.training.validation import predict_labels
    from MultiModalSegLib.weights import load_model_package, update_manifest

    source = output / BEST if (output / BEST).is_dir() else output / LAST
    network = load_model_package(source).build_network(device)
    predictions = [predict_labels(network, method, volume.image, patch_size, device=device) for volume in held_out]
    choice = choose_largest_component(predictions, [volume.label for volume in held_out], label_names)
    for selection in (BEST, LAST):
        folder = output / selection
        if (folder / "manifest.json").is_file():
            update_manifest(folder, lambda manifest: manifest["plan"].update(
                postprocessing={"largest_component": choice["largest_component"], "evidence": choice["evidence"]}))
    return {"chosen_on": source.name, **choice}


def train(config: TrainingConfig, data: str, output: str | Path, *, modalities: list[str] | None = None,
          resume: bool = False, resume_iterations: int | None = None, overwrite: bool = False, model_id: str | None = None, title: str | None = None,
          reporter: ProgressReporter | None = None, token: CancellationToken | None = None,
          command: str | None = None) -> TrainingOutcome:
    """Train ``config.method`` on the cases of ``data``; see the module docstring for the output.

    Raises :class:`MultiModalSegError` for unusable data or settings and
    :class:`~MultiModalSegLib.training.cancellation.TrainingCancelled` on SIGTERM/SIGINT.
    """
    import torch

    from MultiModalSegLib.datasets import label_values_of, load_cases, validate_training_cases
    from MultiModalSegLib.destinations import weights_kept_if_save_fails
    from MultiModalSegLib.progress import ProgressReporter
    from MultiModalSegLib.training.cancellation import CancellationToken
    from MultiModalSegLib.training.checkpoint import TrainingState, load_checkpoint, save_checkpoint
    from MultiModalSegLib.training.config import TrainingConfig
    from MultiModalSegLib.training.data import describe_labels, describe_modalities, split_cases
    from MultiModalSegLib.training.distributed import (
        init_distributed,
        resolve_device,
        shutdown_distributed,
        weights_digest,
    )
    from MultiModalSegLib.training.loop import TrainingLoop, check_cancelled
    from MultiModalSegLib.training.package_manifest import build_manifest, model_card, utc_now
    from MultiModalSegLib.training.resume import refuse_other_method
    from MultiModalSegLib.training.setup import (
        build_network,
        build_optimizer,
        build_step,
        make_batch_loader,
        make_grad_scaler,
        network_architecture,
        prepare_volumes,
        seed_everything,
        use_channels_last,
        validation_volumes,
    )
    from MultiModalSegLib.training.validation import validate_network
    from MultiModalSegLib.weights import save_model_package

    started = time.perf_counter()
    reporter = reporter or ProgressReporter(quiet=True)
    token = token or CancellationToken()
    output = Path(output)
    config.validate()
    device = resolve_device(config.device)
    context = init_distributed(device)
    try:
        if not context.is_main:
            reporter.quiet = True
        _prepare_output(output, resume, overwrite, context.is_main)
        loaded = None
        if resume:
            loaded = load_checkpoint(output / CHECKPOINT)
            saved = TrainingConfig.from_dict(loaded.record["config"])
            refuse_other_method(saved.method, config.method, output)
            saved.device, saved.num_workers = config.device, config.num_workers
            extra = loaded.record.get("extra", {})
            if extra.get("data") and str(extra["data"]) != str(data):
                raise MultiModalSegError(
                    f"The checkpoint in {output} was trained on '{extra['data']}', not '{data}'; resume with the same "
                    "--data or start a new output folder.")
            if resume_iterations is not None:
                saved.iterations = int(resume_iterations)
            config = saved
            modalities = extra.get("modalities") or modalities
            model_id = model_id or extra.get("model_id")
        context.barrier()
        seed_everything(config.seed, config.deterministic)
        reporter.emit("started", verb="train", method=config.method, data=str(data), output=str(output.resolve()),
                      device=str(device), world_size=context.world_size, resume=bool(resume),
                      iterations=config.iterations, patch_size=list(config.patch_size), batch_size=config.batch_size)

        cases = load_cases(str(data), modalities)
        modality_table = describe_modalities(str(data), cases, modalities)
        split = split_cases(cases, config.labeled_cases, config.validation_cases)
        validate_training_cases(split.labeled + split.validation, modality_table.names, require_label=True,
                                reference=modality_table.reference)
        if split.unlabeled:
            validate_training_cases(split.unlabeled, modality_table.names, require_label=False,
                                    reference=modality_table.reference)
        labels = describe_labels(str(data), label_values_of(split.labeled + split.validation))
        check_cancelled(token, context, device, 0)
        reporter.emit("data", labeled=len(split.labeled), unlabeled=len(split.unlabeled),
                      validation=len(split.validation), modalities=modality_table.names,
                      reference_modality=modality_table.reference, labels=labels.names)
        preprocessing: dict[str, Any] = {}
        plan = _training_plan(config, loaded, split, modality_table)
        if plan is not None:
            reporter.emit("plan", target_spacing=list(plan.target_spacing), normalization=plan.normalization,
                          fingerprint=plan.fingerprint)
        labeled_volumes = prepare_volumes(split.labeled, modality_table, preprocessing, config.patch_size, plan)
        unlabeled_volumes = prepare_volumes(split.unlabeled, modality_table, preprocessing, config.patch_size, plan)
        held_out = validation_volumes(prepare_volumes(split.validation, modality_table, preprocessing, plan=plan),
                                      labels) if context.is_main else []

        check_cancelled(token, context, device, 0)
        architecture = network_architecture(config, modality_table.names, labels.num_foreground)
        module = build_network(architecture, config.patch_size).to(device)
        channels_last = use_channels_last(device, config.channels_last)
        if channels_last:
            module = module.to(memory_format=torch.channels_last_3d)
        optimizer = build_optimizer(module, config.optimizer)
        scaler = make_grad_scaler(device, config.amp)
        model_id = model_id or _default_model_id(config.method, str(data))
        extra = {"data": str(data), "modalities": modality_table.names, "model_id": model_id, "split": split.summary(),
                 "command": command, "started": utc_now(), "plan": plan.to_dict() if plan is not None else None}
        state = TrainingState(iteration=0, total_iterations=config.iterations, config=config.to_dict(),
                              method=config.method, extra=extra)
        if loaded is not None:
            loaded.restore(module, optimizer, scaler)
            state = loaded.state
            state.total_iterations = config.iterations
            state.config = config.to_dict()
            state.extra = {**extra, **{k: v for k, v in state.extra.items() if k in ("started",)}}
        network = context.wrap(module, device, find_unused_parameters=config.method == "maml")
        labeled_batch = config.effective_labeled_batch_size
        if config.method == "maml" and split.unlabeled and config.labeled_batch_size is None:
            labeled_batch = max(1, config.batch_size // 2)
        batches = make_batch_loader(labeled_volumes, unlabeled_volumes, method=config.method, labels=labels,
                                    patch_size=config.patch_size, batch_size=config.batch_size,
                                    labeled_batch_size=labeled_batch, foreground_fraction=config.foreground_fraction,
                                    seed=config.seed, context=context,
                                    num_workers=config.num_workers, start_iteration=state.iteration,
                                    augmentation=config.augmentation)

        def manifest_for(selection: str, iteration: int) -> dict[str, Any]:
            provenance = {
                "selection": selection, "command": command, "data": str(data), "seed": config.seed,
                "iteration": iteration, "iterations": config.iterations, "world_size": context.world_size,
                "cases": split.summary(), "config": config.to_dict(), "final_losses": state.last_losses,
                "validation": list(state.history), "best_iteration": state.best_iteration,
                "best_metric": state.best_metric, "started": state.extra.get("started"),
            }
            manifest = build_manifest(model_id=model_id, version=1, method=config.method,
                                      title=title or f"{config.method.upper()} trained on {data}",
                                      modalities=modality_table, labels=labels, patch_size=config.patch_size,
                                      architecture=architecture, preprocessing=preprocessing, provenance=provenance)
            if config.method == "dtc":
                # DTC Table 2's "LSF" row reads its label from the level set (inference.predict)
                manifest["segmentation_output"] = config.dtc.segmentation_output
            if plan is not None:
                manifest["plan"] = plan.to_dict()
            return manifest

        def write_package(selection: str, iteration: int) -> Path:
            manifest = manifest_for(selection, iteration)
            return save_model_package(module, manifest, output / selection, model_card(manifest)).folder

        def on_best(result: Any) -> None:
            with weights_kept_if_save_fails(module, lambda: manifest_for(BEST, result.iteration), output / BEST,
                                            model_card):
                write_package(BEST, result.iteration)

        def on_checkpoint(current: TrainingState) -> Path:
            with weights_kept_if_save_fails(module, lambda: manifest_for(LAST, current.iteration),
                                            output / CHECKPOINT, model_card):
                path = save_checkpoint(output / CHECKPOINT, module, optimizer, current, scaler)
                write_package(LAST, current.iteration)
            return path

        # the validator must be given on every rank (only rank 0 calls it), or the ranks' barriers differ
        def validator(net: Any, iteration: int) -> Any:
            return validate_network(net, config.method, held_out, labels.names, config.patch_size, iteration,
                                    device=device, token=None if context.enabled else token,
                                    segmentation_output=config.dtc.segmentation_output)

        loop = TrainingLoop(network=network, module=module, optimizer=optimizer, step=build_step(config),
                            batches=batches, optimizer_config=config.optimizer, state=state, device=device,
                            context=context, token=token, reporter=reporter, amp=config.amp, grad_scaler=scaler,
                            channels_last=channels_last, progress_every=config.progress_every,
                            validate_every=config.validate_every,
                            validator=validator if split.validation else None, on_best=on_best,
                            checkpoint_every=config.checkpoint_every, on_checkpoint=on_checkpoint)
        state = loop.run()
        context.synchronize_buffers(module)
        postprocessing = None
        if context.is_main and plan is not None and held_out and state.iteration >= config.iterations:
            postprocessing = choose_package_postprocessing(output, config.method, held_out, labels.names,
                                                           config.patch_size, device)
            reporter.emit("postprocessing", **postprocessing)
        digests = context.gather_objects(weights_digest(module))
        outcome = TrainingOutcome(
            output=output, is_main=context.is_main, iterations=state.iteration,
            best=(output / BEST) if (output / BEST).is_dir() else None,
            last=(output / LAST) if (output / LAST).is_dir() else None,
            checkpoint=(output / CHECKPOINT) if (output / CHECKPOINT).is_dir() else None,
            best_metric=state.best_metric, best_iteration=state.best_iteration, final_losses=state.last_losses,
            history=list(state.history), seconds=time.perf_counter() - started,
            seconds_per_iteration=loop.seconds_per_iteration, rank_weight_digests=digests)
        if context.is_main:
            atomic_write_json(output / RESULT, {
                **outcome.summary(), "method": config.method, "data": str(data), "model_id": model_id,
                "split": split.summary(), "validation": outcome.history, "command": command,
                "plan": plan.to_dict() if plan is not None else None, "postprocessing": postprocessing,
                "files": sorted(str(p.relative_to(output)) for p in output.rglob("*")
                                if p.is_file() and ".tmp-" not in str(p) and p.name != RESULT) + [RESULT],
            })
        context.barrier()
        return outcome
    finally:
        shutdown_distributed(context)
