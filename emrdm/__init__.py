__version__ = "0.0.1"
"emrdm: cloud removal with EMRDM. The modules are exported from the notebooks in nbs/; this file only re-exports."

from emrdm.model import EMRDM, Config, ConfigError, available_configs, load_config  # noqa: E402

__all__ = ["EMRDM", "Config", "ConfigError", "available_configs", "load_config", "__version__"]
