"""dg.autograd: PyTorch-style and MXNet-style automatic differentiation on one engine."""
from .api import backward, grad
from .function import Function, FunctionCtx
from .graph import AccumulateGrad, Node
from .modes import (Tape, detect_anomaly, enable_grad, inference_mode, is_anomaly_enabled, is_grad_enabled,
                    is_inference_mode_enabled, is_recording, is_training, no_grad, pause, predict_mode, record, set_grad_enabled, set_recording,
                    set_training, train_mode)
from .check import gradcheck, gradgradcheck


__all__ = ["detect_anomaly", "is_anomaly_enabled", "grad", "backward", "Function", "FunctionCtx", "gradcheck",
           "gradgradcheck", "no_grad", "inference_mode", "is_inference_mode_enabled", "enable_grad", "set_grad_enabled", "is_grad_enabled", "record", "pause", "train_mode", "predict_mode",
           "is_recording", "is_training", "set_training", "set_recording", "Tape", "Node", "AccumulateGrad"]
