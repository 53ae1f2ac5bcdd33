"""Cosmos Policy in pure PyTorch: a video diffusion transformer post-trained into a robot policy.

Importing the package is light (no torch / diffusers import); the public classes load on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "CosmosPolicy": "cosmos_policy.policy",
    "ActionChunk": "cosmos_policy.policy",
    "CosmosPolicyModel": "cosmos_policy.diffusion",
    "NetworkConfig": "cosmos_policy.config",
    "LayoutConfig": "cosmos_policy.config",
    "SamplerConfig": "cosmos_policy.config",
    "load_layout": "cosmos_policy.config",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cosmos_policy' has no attribute {name!r}")
