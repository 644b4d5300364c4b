"""Arithmetic work of a model per image, counted from its layers: what bounds its speed on a CPU.

Keras and TensorFlow 2 ship no FLOP counter for Keras 3 models, hence this short one. It counts the
multiply-adds of every Conv2D (dilated included) and Dense layer, nested models included, as 2 FLOPs
each; biases, normalization, activations, pooling and the feature-channel filters are left out (well
under 1 % of the total for these UNets). A training step costs about 3× the forward pass (the backward
pass computes gradients for both the inputs and the weights of each layer).
"""
import math

import keras

TRAINING_FACTOR = 3


def _layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer


def forward_flops(model: keras.Model) -> int:
    """FLOPs of one image's forward pass through `model`'s Conv2D and Dense layers (1 multiply-add = 2)."""
    total = 0
    for layer in _layers(model):
        if isinstance(layer, keras.layers.Conv2D):
            kernel_h, kernel_w, in_per_group, out_channels = layer.kernel.shape
            positions = math.prod(layer.output.shape[1:-1])
            total += 2 * positions * out_channels * kernel_h * kernel_w * in_per_group
        elif isinstance(layer, keras.layers.Dense):
            inputs, outputs = layer.kernel.shape
            total += 2 * math.prod(layer.output.shape[1:-1]) * inputs * outputs
    return int(total)
