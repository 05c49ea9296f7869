"""MXNet's evaluation metrics (`mx.metric` / `gluon.metric`): update(labels, preds), get(), reset()."""
import math

from ..errors import ShapeError
from ..tensor import Tensor


def _list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _numpy(x):
    return x.numpy() if isinstance(x, Tensor) else x


class EvalMetric:
    def __init__(self, name, output_names=None, label_names=None, **kwargs):
        self.name = name
        self.reset()

    def reset(self):
        self.num_inst = 0
        self.sum_metric = 0.0

    def get(self):
        """(name, value); the value is nan before any update."""
        return self.name, (self.sum_metric / self.num_inst if self.num_inst else float("nan"))

    def get_name_value(self):
        name, value = self.get()
        return list(zip(_list(name), _list(value)))

    def __str__(self):
        return f"EvalMetric: {dict(self.get_name_value())}"


class Accuracy(EvalMetric):
    """Fraction of correct predictions; a prediction with more axes than its label is reduced with
    argmax over `axis` first."""

    def __init__(self, axis=1, name="accuracy", **kwargs):
        self.axis = axis
        super().__init__(name, **kwargs)

    def update(self, labels, preds):
        labels, preds = _list(labels), _list(preds)
        if len(labels) != len(preds):
            raise ShapeError(f"Accuracy.update: {len(labels)} label arrays but {len(preds)} predictions")
        for label, pred in zip(labels, preds):
            label, pred = _numpy(label), _numpy(pred)
            if pred.shape != label.shape:
                pred = pred.argmax(axis=self.axis)
            pred, label = pred.astype("int64").ravel(), label.astype("int64").ravel()
            if pred.shape != label.shape:
                raise ShapeError(f"Accuracy.update: labels of shape {label.shape} and predictions of shape "
                                 f"{pred.shape} do not match")
            self.sum_metric += float((pred == label).sum())
            self.num_inst += len(pred)


class MSE(EvalMetric):
    def __init__(self, name="mse", **kwargs):
        super().__init__(name, **kwargs)

    def _value(self, label, pred):
        return float(((label - pred) ** 2).mean())

    def update(self, labels, preds):
        for label, pred in zip(_list(labels), _list(preds)):
            label, pred = _numpy(label), _numpy(pred)
            label = label.reshape(pred.shape) if label.size == pred.size else label
            self.sum_metric += self._value(label, pred)
            self.num_inst += 1


class MAE(MSE):
    def __init__(self, name="mae", **kwargs):
        super().__init__(name, **kwargs)

    def _value(self, label, pred):
        return float(abs(label - pred).mean())


class RMSE(MSE):
    def __init__(self, name="rmse", **kwargs):
        super().__init__(name, **kwargs)

    def _value(self, label, pred):
        return math.sqrt(float(((label - pred) ** 2).mean()))


class Loss(EvalMetric):
    """The mean of the loss values it is given (labels are ignored)."""

    def __init__(self, name="loss", **kwargs):
        super().__init__(name, **kwargs)

    def update(self, _, preds):
        for pred in _list(preds):
            arr = _numpy(pred)
            self.sum_metric += float(arr.sum())
            self.num_inst += arr.size
