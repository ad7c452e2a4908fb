"""Frozen-encoder evaluation: cached feature extraction, then k-NN / linear probes whose
hyper-parameters are selected on a held-out part of train and scored once on the eval split."""

from probes.result import ProbeResult, topk_accuracy

__all__ = ["ProbeResult", "topk_accuracy"]
