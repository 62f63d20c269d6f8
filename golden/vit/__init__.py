"""The golden ViT: a whole DeiT-style model in the accelerator's integer arithmetic.

Modules, in dependency order (each imports only modules above it, and the unit golden models
of :mod:`heatvit.golden`; a test walks the imports and checks it):

* :mod:`.config`: ``ViTConfig`` (shapes, timm key names, MAC counts), ``PruningPlan``.
* :mod:`.ops`: the one place the ViT binds the nonlinear golden models (formats for the ViT).
* :mod:`.selector`: the ViT's view of the token selector (shapes, calls, kept-patch bookkeeping).
* :mod:`.model`: ``ViTModel``, timm state-dict import, ``.npz`` save/load, the default model.
* :mod:`.float_forward`: the float32 reference forward (dense or with selectors).
* :mod:`.int_forward`: the bit-exact integer forward (dense or with selectors).
* :mod:`.latency`: GEMM-engine cycles and MACs of a forward pass.
* :mod:`.quantize`: post-training quantization (float model -> ``QuantizedViT``).
* :mod:`.data`: the digits splits of the default model.
* :mod:`.torch_ref`: the PyTorch twin (needs torch; not imported here).
"""

from .config import PruningPlan, ViTConfig
from .model import ViTModel, from_state_dict, load_npz, save_npz
from .float_forward import forward_float
from .int_forward import forward_int, row_chunks
from .quantize import QuantizedViT, quantize_model

__all__ = ["PruningPlan", "ViTConfig", "ViTModel", "from_state_dict", "load_npz", "save_npz", "forward_float",
           "forward_int", "row_chunks", "QuantizedViT", "quantize_model"]
