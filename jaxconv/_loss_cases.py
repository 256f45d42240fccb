"""Registry declarations of the losses (``_loss.py``): softmax_loss and svm_loss."""
import numpy as np

from jaxconv import _loss, reference
from jaxconv._registry import Bench, Case, Invalid, away_from_zero, declare, normal

_X, _V4 = np.ones((4, 3)), np.ones(4)
_Y = np.array([0, 1, 2, 0])


def _invalid(loss):
    def cases():
        return [
            Invalid("scores-1d", (_V4, _Y), {}, ValueError,
                    rf"{loss}: scores must be 2-D.*scores\.shape=\(4,\)"),
            Invalid("scores-3d", (np.ones((4, 3, 1)), _Y), {}, ValueError,
                    rf"{loss}: scores must be 2-D"),
            Invalid("scores-int", (np.ones((4, 3), int), _Y), {}, TypeError,
                    rf"{loss}: scores must have a floating dtype"),
            Invalid("labels-float", (_X, _Y.astype(float)), {}, TypeError,
                    rf"{loss}: y must hold integer class labels.*float64"),
            Invalid("labels-bool", (_X, _Y > 0), {}, TypeError,
                    rf"{loss}: y must hold integer class labels"),
            Invalid("labels-2d", (_X, _Y[:, None]), {}, ValueError,
                    rf"{loss}: y must have shape \(4,\).*y\.shape=\(4, 1\)"),
            Invalid("batch-mismatch", (_X, _Y[:3]), {}, ValueError,
                    rf"{loss}: y must have shape \(4,\).*y\.shape=\(3,\).*scores\.shape=\(4, 3\)"),
            # Concrete labels only: under jit the loss is NaN instead (tests/test_loss.py).
            Invalid("label-range", (_X, _Y + 1), {}, ValueError,
                    rf"{loss}: labels must be in \[0, 3\).*y\[2\]=3", traced=False),
            Invalid("label-negative", (np.ones((3, 5)), np.array([0, -1, 1])), {}, ValueError,
                    rf"{loss}: labels must be in \[0, 5\).*y\[1\]=-1", traced=False),
        ]
    return cases


def _bench(loss):
    def cases(quick):
        n, k = (8, 10) if quick else (256, 1000)
        labels = np.random.default_rng(0).integers(0, k, n)
        return [Bench(f"{loss} ({n}, {k})", (normal(1, n, k), labels))]
    return cases


declare(
    _loss.softmax_loss, reference.softmax_loss, grads=("scores",),
    cases=lambda: [Case("scores (4, 5)", (normal(1, 4, 5), np.array([0, 4, 2, 2]))),
                   Case("scores (6, 4) x 3", (3 * normal(2, 6, 4), np.array([0, 3, 1, 1, 2, 3])),
                        transforms=False)],
    bench=_bench("softmax_loss"), invalid=_invalid("softmax_loss"),
    torch=lambda torch, scores, y: torch.nn.functional.cross_entropy(scores, y),
)

declare(
    _loss.svm_loss, reference.svm_loss, grads=("scores",),
    # Scores 0.1 apart at most, margin >= 0.5: every margin active and far from the
    # kink (inactive entries have exactly-zero gradients, where the element-wise
    # relative error only measures the differences' rounding; tests/test_loss.py
    # covers them with NumPy loops).
    cases=lambda: [
        Case("scores (4, 5), all margins active",
             (0.05 * away_from_zero(1, 4, 5), np.array([1, 0, 4, 1]))),
        Case("margin 0.5", (0.05 * away_from_zero(2, 5, 5), np.array([0, 4, 2, 2, 1])),
             dict(margin=0.5), transforms=False),
    ],
    bench=_bench("svm_loss"),
    invalid=lambda: _invalid("svm_loss")() + [
        Invalid("margin", (_X, _Y), dict(margin=-1.0), ValueError,
                r"svm_loss: margin must be in \[0\.0, inf\)")],
    # PyTorch's multi_margin_loss divides each sample's hinge sum by the number of
    # classes; CS231n's SVM loss does not.
    torch=lambda torch, scores, y, *, margin=1.0: torch.nn.functional.multi_margin_loss(
        scores, y, margin=margin) * scores.shape[1],
)
