"""ssl-bench: benchmark harness for self-supervised visual representation learning."""

__version__ = "0.1.0"
