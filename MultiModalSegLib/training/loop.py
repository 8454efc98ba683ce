"""The training loop shared by ``mmseg train`` and ``mmseg finetune``.

One iteration: check for cancellation (on every rank at once), set the learning rate of the
schedule, draw a batch, run the method's step (:mod:`.maml_step` or :mod:`.dtc_step`) under
autocast when AMP is on, back-propagate (through the grad scaler on CUDA), clip the gradient
norm if the method does, update. Then, on their schedules: a ``progress`` event, validation
(rank 0; a new best is written at once), and a checkpoint (rank 0). Other ranks wait at a
barrier while rank 0 writes, so all stay in step.

Cancellation is checked at the start of every iteration and again before anything is
written, so nothing is written after a signal arrives (see :mod:`.cancellation`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.training.checkpoint import TrainingState

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from MultiModalSegLib.progress import ProgressReporter
    from MultiModalSegLib.training.cancellation import CancellationToken
    from MultiModalSegLib.training.config import OptimizerConfig
    from MultiModalSegLib.training.distributed import DistributedContext
    from MultiModalSegLib.training.validation import ValidationResult


@dataclass
class StepResult:
    """What a method's step returns: the loss to back-propagate and named terms to report."""

    loss: torch.Tensor
    terms: dict[str, float]


class TrainingStep(Protocol):
    """``step(network, batch, iteration) -> StepResult``; ``batch`` tensors are on the device."""

    def __call__(self, network: torch.nn.Module, batch: dict[str, Any], iteration: int) -> StepResult: ...


def batch_to_device(batch: dict[str, Any], device: torch.device, channels_last: bool = False) -> dict[str, Any]:
    """Move every array of a loader batch to ``device`` (labels as int64, images as float32).

    ``channels_last`` lays the image out channels-last (for a network converted the same way).
    """
    import numpy as np
    import torch

    moved: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        if isinstance(value, torch.Tensor):
            if key == "label":
                value = value.long()
            elif value.is_floating_point():
                value = value.float()
            value = value.to(device, non_blocking=True)
            if channels_last and key == "image" and value.dim() == 5:
                value = value.contiguous(memory_format=torch.channels_last_3d)
        moved[key] = value
    return moved


def check_cancelled(token: CancellationToken, context: DistributedContext, device: torch.device | str = "cpu",
                    iteration: int | None = None) -> None:
    """Raise TrainingCancelled on every rank at once if any rank received a signal.

    A collective under DDP: call it at the same points on every rank.
    """
    if context.any_true(token.requested, device):
        if not token.requested:
            token.cancel(None)
        token.check(iteration)


class TrainingLoop:
    """Runs iterations ``state.iteration .. total_iterations`` of one training job.

    ``network`` is what the step calls (a DDP wrapper under torchrun), ``module`` the plain
    network (validated and saved). ``validator(module, iteration)`` returns a
    :class:`ValidationResult`; ``on_best(result)`` writes the best model;
    ``on_checkpoint(state)`` writes the checkpoint (and the last model). Only rank 0 calls
    the three of them.
    """

    def __init__(self, *, network: torch.nn.Module, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 step: TrainingStep, batches: Iterator[dict[str, Any]], optimizer_config: OptimizerConfig,
                 state: TrainingState, device: torch.device, context: DistributedContext,
                 token: CancellationToken, reporter: ProgressReporter, amp: bool = False,
                 grad_scaler: Any = None, channels_last: bool = False, progress_every: int = 1,
                 stage: str = "training",
                 validate_every: int | None = None,
                 validator: Callable[[torch.nn.Module, int], ValidationResult] | None = None,
                 on_best: Callable[[ValidationResult], None] | None = None,
                 checkpoint_every: int | None = None,
                 on_checkpoint: Callable[[TrainingState], Any] | None = None) -> None:
        self.network = network
        self.module = module
        self.optimizer = optimizer
        self.step = step
        self.batches = batches
        self.optimizer_config = optimizer_config
        self.state = state
        self.device = device
        self.context = context
        self.token = token
        self.reporter = reporter
        self.amp = bool(amp) and device.type == "cuda"
        self.grad_scaler = grad_scaler
        self.channels_last = bool(channels_last)
        self.progress_every = max(1, int(progress_every))
        self.stage = stage
        self.validate_every = validate_every
        self.validator = validator
        self.on_best = on_best
        self.checkpoint_every = checkpoint_every
        self.on_checkpoint = on_checkpoint
        self.seconds_per_iteration: float | None = None

    # -- helpers -------------------------------------------------------------------------------------------

    def _check_cancelled(self, iteration: int) -> None:
        check_cancelled(self.token, self.context, self.device, iteration)

    def _set_learning_rate(self, iteration: int) -> float:
        lr = self.optimizer_config.learning_rate_at(iteration, self.state.total_iterations)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _update(self, loss: torch.Tensor) -> None:
        import torch

        self.optimizer.zero_grad(set_to_none=True)
        clip = self.optimizer_config.gradient_clip_norm
        if self.grad_scaler is not None and self.grad_scaler.is_enabled():
            self.grad_scaler.scale(loss).backward()
            if clip:
                self.grad_scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.module.parameters(), clip)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(self.module.parameters(), clip)
            self.optimizer.step()

    # -- the loop ------------------------------------------------------------------------------------------

    def run(self) -> TrainingState:
        """Train to ``state.total_iterations``; raises TrainingCancelled on a signal."""
        import torch

        total = self.state.total_iterations
        window_start = time.perf_counter()
        window_iterations = 0
        self.network.train()
        while self.state.iteration < total:
            iteration = self.state.iteration
            self._check_cancelled(iteration)
            lr = self._set_learning_rate(iteration)
            batch = batch_to_device(next(self.batches), self.device, self.channels_last)
            with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
                result = self.step(self.network, batch, iteration)
            if not torch.isfinite(result.loss.detach()).item():
                raise MultiModalSegError(
                    f"Training diverged at iteration {iteration + 1} (the loss is {result.loss.item()}); "
                    "lower the learning rate or check the labels, then train again.")
            self._update(result.loss)
            self.state.iteration = done = iteration + 1
            window_iterations += 1
            terms = {"loss": float(result.loss.detach().item()), **result.terms}

            if done % self.progress_every == 0 or done == total:
                terms = self.context.mean_of(terms, self.device)
                self.state.last_losses = terms
                now = time.perf_counter()
                self.seconds_per_iteration = (now - window_start) / max(window_iterations, 1)
                window_start, window_iterations = now, 0
                eta = self.seconds_per_iteration * (total - done)
                if self.context.is_main:
                    self.reporter.emit("progress", stage=self.stage, done=done, total=total, iteration=done,
                                       losses={k: round(v, 6) for k, v in terms.items()},
                                       lr=lr, seconds_per_iteration=round(self.seconds_per_iteration, 4),
                                       eta_s=round(eta, 1))
            else:
                self.state.last_losses = terms

            validate_now = (self.validator is not None and self.validate_every
                            and (done % self.validate_every == 0 or done == total))
            checkpoint_now = (self.on_checkpoint is not None and self.checkpoint_every
                              and (done % self.checkpoint_every == 0 or done == total))
            if validate_now or checkpoint_now:
                self._check_cancelled(done)
            if validate_now:
                self._validate(done)
            if checkpoint_now:
                if self.context.is_main:
                    path = self.on_checkpoint(self.state)
                    self.reporter.emit("checkpoint", iteration=done, path=str(path) if path else None)
                self.context.barrier()
            if validate_now or checkpoint_now:  # validation and writing do not count as iteration time
                window_start, window_iterations = time.perf_counter(), 0
        return self.state

    def _validate(self, done: int) -> None:
        if self.context.is_main:
            result = self.validator(self.module, done)
            improved = math.isfinite(result.mean_dice) and (
                self.state.best_metric is None or result.mean_dice > self.state.best_metric)
            record = result.to_dict()
            record["best"] = bool(improved)
            self.state.history.append({k: v for k, v in record.items() if k != "cases"})
            if improved:
                self.state.best_metric = result.mean_dice
                self.state.best_iteration = done
                if self.on_best is not None:
                    self._check_cancelled_local(done)
                    self.on_best(result)
            self.reporter.emit("validation", stage=self.stage, iteration=done, mean_dice=result.mean_dice,
                               dice_per_class=result.dice_per_class, best=bool(improved),
                               best_iteration=self.state.best_iteration, seconds=round(result.seconds, 3),
                               cases=result.cases)
        self.context.barrier()

    def _check_cancelled_local(self, iteration: int) -> None:
        """Rank-local check (single process only: under DDP the other ranks wait at a barrier)."""
        if not self.context.enabled:
            self.token.check(iteration)
