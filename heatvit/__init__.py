"""heatvit: a Vision Transformer accelerator with adaptive token pruning, in Amaranth HDL."""

import sys as _sys
from importlib.machinery import ModuleSpec as _ModuleSpec
from importlib.util import module_from_spec as _module_from_spec
from pathlib import Path as _Path

from .config import DEFAULT, AcceleratorConfig, GemmConfig

__version__ = "0.1.0"
__all__ = ["AcceleratorConfig", "GemmConfig", "DEFAULT", "__version__"]


def _map_platform_in_checkout() -> None:
    # platform/ has no __init__.py (it must not shadow the stdlib module `platform`), and
    # setuptools' editable finder cannot map such a namespace portion nested in a regular
    # package.  In a source checkout, map heatvit.platform to it here; installed wheels carry
    # heatvit/platform/ themselves and skip this.
    here = _Path(__file__).resolve().parent
    src = here.parent / "platform"
    if (here / "platform").exists() or not src.is_dir() or "heatvit.platform" in _sys.modules:
        return
    spec = _ModuleSpec("heatvit.platform", None, is_package=True)
    spec.submodule_search_locations = [str(src)]
    _sys.modules["heatvit.platform"] = _module_from_spec(spec)


_map_platform_in_checkout()
