"""One MAML training iteration: mutual-learning loss on labeled cases, branch-joint consistency on unlabeled.

Labeled part (the paper's Eq. and the reference's ``MultipleOutputLoss2`` over the joint output
and every branch's deep-supervision outputs): :class:`~MultiModalSegLib.losses.MAMLLoss`,
``lambda * sum_i L_intra(Y | X_i) + L_joint(Y | X)`` with Dice + CE.

Unlabeled part (ours; MAML is supervised and has none): the joint output fuses all modalities
and is usually the better prediction, so each modality branch is pulled towards it and it towards
them, ``mean_i mean((softmax(branch_i) - softmax(joint))^2)`` -- the squared-softmax consistency of
mean-teacher / DTC style, applied mutually (gradients flow into both sides, as in deep mutual
learning) between the branches and the joint output. Its weight follows the DTC sigmoid ramp-up,
``w(t) = weight * exp(-5 (1 - t / T)^2)``, so the supervised loss shapes the network first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from MultiModalSegLib.training.loop import StepResult

if TYPE_CHECKING:  # pragma: no cover
    import torch


def slice_outputs(outputs: dict[str, Any], part: slice) -> dict[str, Any]:
    """The MAML output dict restricted to the batch entries ``part`` (nested dicts and lists too)."""
    import torch

    def cut(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value[part]
        if isinstance(value, dict):
            return {k: cut(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(cut(v) for v in value)
        return value

    return cut(outputs)


def branch_joint_consistency(outputs: dict[str, Any]) -> torch.Tensor:
    """``mean_i mean((softmax(branch_i) - softmax(joint))^2)`` over the batch entries given."""
    import torch

    joint = torch.softmax(outputs["joint"].float(), dim=1)
    terms = [torch.mean((torch.softmax(logits.float(), dim=1) - joint) ** 2)
             for logits in outputs["branches"].values()]
    return torch.stack(terms).mean()


def loss_terms(value: Any) -> tuple[torch.Tensor, dict[str, float]]:
    """Accept a loss that returns a tensor or a dict with ``total`` and named terms."""
    import torch

    if isinstance(value, dict):
        total = value["total"]
        terms = {k: float(v.detach().item()) if isinstance(v, torch.Tensor) else float(v)
                 for k, v in value.items() if k != "total" and isinstance(v, (torch.Tensor, float, int))
                 and (not isinstance(v, torch.Tensor) or v.numel() == 1)}
        return total, terms
    return value, {}


class MAMLStep:
    """``step(network, batch, iteration)`` for MAML; the batch's first ``labeled_batch_size`` are labeled."""

    def __init__(self, loss: Any, consistency_weight: float = 1.0, rampup_iterations: int = 6000) -> None:
        self.loss = loss
        self.consistency_weight = float(consistency_weight)
        self.rampup_iterations = int(rampup_iterations)

    def consistency_weight_at(self, iteration: int) -> float:
        from MultiModalSegLib.losses import sigmoid_rampup

        return self.consistency_weight * sigmoid_rampup(iteration, self.rampup_iterations)

    def __call__(self, network: torch.nn.Module, batch: dict[str, Any], iteration: int) -> StepResult:
        image = batch["image"]
        labeled = int(batch.get("labeled_batch_size", image.shape[0]))
        outputs = network(image)
        supervised, terms = loss_terms(self.loss(slice_outputs(outputs, slice(0, labeled)), batch["label"]))
        total = supervised
        if labeled < image.shape[0] and self.consistency_weight > 0:
            terms = {"supervised": float(supervised.detach().item()), **terms}
            consistency = branch_joint_consistency(slice_outputs(outputs, slice(labeled, None)))
            weight = self.consistency_weight_at(iteration)
            total = total + weight * consistency
            terms["consistency"] = float(consistency.detach().item())
            terms["consistency_weight"] = weight
        return StepResult(loss=total, terms=terms)
