"The datasets, one class each holding all its facts; `DATASETS` maps a configuration's `data.dataset` to its class."

# Resolved on first use (PEP 562): `import emrdm.data.core` alone does not import every dataset module.
_LAZY = ("DATASETS", "dataset_class", "open_dataset")
__all__ = list(_LAZY)


def __getattr__(name):
    if name not in _LAZY: raise AttributeError(f"module 'emrdm.data' has no attribute {name!r}")
    from emrdm.data import registry
    return getattr(registry, name)


def __dir__(): return sorted(set(globals()) | set(_LAZY))
