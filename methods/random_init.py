"""Random-init baseline: the untrained backbone, evaluated with the same probes (no training)."""

from methods import register
from methods.base import Method


@register
class RandomInit(Method):
    name = "random"
    trainable = False
