"""Gluon's losses: each returns one value per sample (the mean over every axis but `batch_axis`),
scaled by `weight` and by the optional `sample_weight` broadcast against the elementwise loss."""
from ..errors import ShapeError
from .block import HybridBlock


def _apply_weighting(loss, weight=None, sample_weight=None):
    if sample_weight is not None:
        loss = loss * sample_weight
    if weight is not None:
        loss = loss * weight
    return loss


def _reshape_like(label, pred, name):
    ls, ps = tuple(label.shape), tuple(pred.shape)
    if ls == ps:
        return label
    if _concrete(ls + ps) and label.numel() != pred.numel():
        raise ShapeError(f"{name}: label of shape {ls} does not match prediction of shape {ps}")
    return label.reshape(ps)


class Loss(HybridBlock):
    """Base class: `weight` scales the loss, `batch_axis` is kept, every other axis is averaged."""

    def __init__(self, weight=None, batch_axis=0, **kwargs):
        super().__init__(**kwargs)
        self._weight, self._batch_axis = weight, batch_axis

    def _mean(self, F, loss):
        return F.mean(loss, axis=self._batch_axis, exclude=True)

    def __repr__(self):
        return f"{type(self).__name__}(batch_axis={self._batch_axis}, w={self._weight})"


class L2Loss(Loss):
    """weight / 2 * (pred - label)^2, averaged per sample (MXNet's 1/2 factor: half PyTorch's MSELoss)."""

    def __init__(self, weight=1.0, batch_axis=0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)

    def hybrid_forward(self, F, pred, label, sample_weight=None):
        label = _reshape_like(label, pred, "L2Loss")
        loss = F.square(label - pred)
        loss = _apply_weighting(loss, self._weight / 2, sample_weight)
        return self._mean(F, loss)


class L1Loss(Loss):
    """|pred - label|, averaged per sample."""

    def __init__(self, weight=None, batch_axis=0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)

    def hybrid_forward(self, F, pred, label, sample_weight=None):
        label = _reshape_like(label, pred, "L1Loss")
        loss = _apply_weighting(F.abs(label - pred), self._weight, sample_weight)
        return self._mean(F, loss)


class SoftmaxCrossEntropyLoss(Loss):
    """-log softmax(pred)[label] along `axis` (sparse_label=True: class indices, possibly float) or
    -sum(label * log softmax(pred)) (sparse_label=False: distributions); from_logits=True means pred
    already holds log-probabilities."""

    def __init__(self, axis=-1, sparse_label=True, from_logits=False, weight=None, batch_axis=0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._axis, self._sparse_label, self._from_logits = axis, sparse_label, from_logits

    def hybrid_forward(self, F, pred, label, sample_weight=None):
        if not self._from_logits:
            pred = F.log_softmax(pred, axis=self._axis)
        if self._sparse_label:
            axis = self._axis % pred.ndim
            expected = tuple(d for i, d in enumerate(pred.shape) if i != axis)
            if label.ndim == pred.ndim and label.shape[axis] == 1:     # (N, 1) labels
                label = F.squeeze(label, axis=axis)
            if label.ndim != len(expected) or (_concrete(label.shape + expected)
                                               and tuple(label.shape) != expected):
                raise ShapeError(f"SoftmaxCrossEntropyLoss: sparse labels of shape {tuple(label.shape)} do not "
                                 f"match predictions of shape {tuple(pred.shape)} (expected {expected})")
            loss = -F.pick(pred, label, axis=axis, keepdims=True)
        else:
            label = _reshape_like(label, pred, "SoftmaxCrossEntropyLoss")
            loss = -F.sum(pred * label, axis=self._axis, keepdims=True)
        loss = _apply_weighting(loss, self._weight, sample_weight)
        return self._mean(F, loss)


SoftmaxCELoss = SoftmaxCrossEntropyLoss


def _concrete(dims):
    """True where no size is symbolic (a hybridized block traced for every batch size)."""
    return all(isinstance(d, int) for d in dims)


class SigmoidBinaryCrossEntropyLoss(Loss):
    """Binary cross-entropy on logits (from_sigmoid=False, computed stably) or on probabilities;
    `pos_weight` scales the positive term."""

    def __init__(self, from_sigmoid=False, weight=None, batch_axis=0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._from_sigmoid = from_sigmoid

    def hybrid_forward(self, F, pred, label, sample_weight=None, pos_weight=None):
        label = _reshape_like(label, pred, "SigmoidBinaryCrossEntropyLoss")
        if not self._from_sigmoid:
            if pos_weight is None:
                loss = F.relu(pred) - pred * label + F.softrelu(-F.abs(pred))
            else:
                log_weight = 1 + (pos_weight - 1) * label
                loss = pred - pred * label + log_weight * (F.softrelu(-F.abs(pred)) + F.relu(-pred))
        else:
            eps = 1e-12
            pos = F.log(pred + eps) * label
            if pos_weight is not None:
                pos = pos * pos_weight
            loss = -(pos + F.log(1.0 - pred + eps) * (1.0 - label))
        loss = _apply_weighting(loss, self._weight, sample_weight)
        return self._mean(F, loss)


SigmoidBCELoss = SigmoidBinaryCrossEntropyLoss


class KLDivLoss(Loss):
    """label * (log(label + 1e-12) - pred), pred being log-probabilities (from_logits=True) or logits
    turned into them with log_softmax along `axis`."""

    def __init__(self, from_logits=True, axis=-1, weight=None, batch_axis=0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._from_logits, self._axis = from_logits, axis

    def hybrid_forward(self, F, pred, label, sample_weight=None):
        if not self._from_logits:
            pred = F.log_softmax(pred, axis=self._axis)
        loss = label * (F.log(label + 1e-12) - pred)
        loss = _apply_weighting(loss, self._weight, sample_weight)
        return self._mean(F, loss)


class HuberLoss(Loss):
    """|d| - rho/2 where |d| > rho, else d^2 / (2 rho), with d = label - pred."""

    def __init__(self, rho=1, weight=None, batch_axis=0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._rho = rho

    def hybrid_forward(self, F, pred, label, sample_weight=None):
        label = _reshape_like(label, pred, "HuberLoss")
        d = F.abs(label - pred)
        loss = F.where(d > self._rho, d - 0.5 * self._rho, (0.5 / self._rho) * F.square(d))
        loss = _apply_weighting(loss, self._weight, sample_weight)
        return self._mean(F, loss)


class HingeLoss(Loss):
    """max(0, margin - pred * label) with labels in {-1, 1}."""

    def __init__(self, margin=1, weight=None, batch_axis=0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._margin = margin

    def hybrid_forward(self, F, pred, label, sample_weight=None):
        label = _reshape_like(label, pred, "HingeLoss")
        loss = F.relu(self._margin - pred * label)
        loss = _apply_weighting(loss, self._weight, sample_weight)
        return self._mean(F, loss)


class SquaredHingeLoss(HingeLoss):
    def hybrid_forward(self, F, pred, label, sample_weight=None):
        label = _reshape_like(label, pred, "SquaredHingeLoss")
        loss = F.square(F.relu(self._margin - pred * label))
        loss = _apply_weighting(loss, self._weight, sample_weight)
        return self._mean(F, loss)
