"""Where the controller manager finds the apiserver: `--kubeconfig` and `--master`.

Kept as a thin alias of `shared.kubeconfig` (which every component uses, through
`shared.connect`) for code that still imports it from here.
"""

from __future__ import annotations

from shared.kubeconfig import DEFAULT_MASTER, ClientConfig, ConfigError
from shared.kubeconfig import load_client_config as load

__all__ = ["DEFAULT_MASTER", "ClientConfig", "ConfigError", "load"]
