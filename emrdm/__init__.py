__version__ = "0.0.1"
"emrdm: cloud removal with EMRDM. The modules are exported from the notebooks in nbs/; this file only re-exports."

# The re-exports are resolved on first use (PEP 562), so that `import emrdm` (and `emrdm --help`, `emrdm --version`)
# does not import torch.
_LAZY = {"EMRDM": "emrdm.checkpoint", "load": "emrdm.checkpoint", "Config": "emrdm.config", "ConfigError": "emrdm.config",
         "available_configs": "emrdm.config", "load_config": "emrdm.config"}   # EMRDM via checkpoint: with save/load attached

__all__ = ["EMRDM", "load", "Config", "ConfigError", "available_configs", "load_config", "__version__"]


def __getattr__(name):
    if name not in _LAZY: raise AttributeError(f"module 'emrdm' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__(): return sorted(set(globals()) | set(_LAZY))
