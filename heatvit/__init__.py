"""heatvit: a Vision Transformer accelerator with adaptive token pruning, in Amaranth HDL."""

from .config import DEFAULT, AcceleratorConfig, GemmConfig

__version__ = "0.1.0"
__all__ = ["AcceleratorConfig", "GemmConfig", "DEFAULT", "__version__"]
