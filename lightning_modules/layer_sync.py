"""Synchronised batch norm under Lightning that keeps the manual layers manual.

``Trainer(sync_batchnorm=True)`` converts every batch norm layer, the manual ``custom_ops.nn.BatchNorm*``
twins included (they subclass ``torch.nn.BatchNorm*``), into the built-in ``torch.nn.SyncBatchNorm``: an
``ops: manual`` model would silently train on built-in batch norm (and fail on CPU, where the built-in
refuses to synchronise). :class:`ManualSyncBatchNorm` is the ``LayerSync`` plugin to use instead: manual
layers become the manual ``custom_ops.nn.SyncBatchNorm``, built-in ones ``torch.nn.SyncBatchNorm``.

Lightning refuses ``sync_batchnorm=True`` together with a ``LayerSync`` plugin of another class, so the
flag is turned into the plugin by :func:`trainer_kwargs_with_manual_sync`::

    trainer = Trainer(**trainer_kwargs_with_manual_sync({"strategy": "ddp", "sync_batchnorm": True}))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.pytorch.plugins.layer_sync import LayerSync
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from custom_ops.nn import SyncBatchNorm, _rebuild_batch_norm

_SYNCHRONISED = (nn.SyncBatchNorm, SyncBatchNorm)  # the manual one is no torch.nn.SyncBatchNorm (DDP on CPU)


class ManualSyncBatchNorm(LayerSync):
    """``LayerSync`` plugin: synchronised batch norm during ``fit`` with the DDP strategies, manual layers
    kept manual (see the module docstring). No effect in single-device training.

    Unlike Lightning's ``TorchSyncBatchNorm``, which reverts every ``SyncBatchNorm`` to a
    dimension-agnostic built-in layer, :meth:`revert` undoes exactly what :meth:`apply` did: each converted
    layer gets back its original class (``custom_ops.nn.BatchNorm1d``, ``torch.nn.BatchNorm2d``, ...), and
    a layer that was a ``SyncBatchNorm`` before :meth:`apply` stays one.

    Example::

        trainer = Trainer(strategy="ddp", devices=2, plugins=[ManualSyncBatchNorm()])
    """

    def __init__(self) -> None:
        self._originals: dict[str, type[_BatchNorm]] = {}

    def apply(self, model: nn.Module) -> nn.Module:
        """Convert the batch norm layers of ``model`` (synchronised over the whole world) with
        ``custom_ops.nn.SyncBatchNorm.convert_sync_batchnorm``, remembering each one's class by its name."""
        self._originals = {
            name: type(module)
            for name, module in model.named_modules(remove_duplicate=False)
            if isinstance(module, _BatchNorm) and not isinstance(module, _SYNCHRONISED)
        }
        return SyncBatchNorm.convert_sync_batchnorm(model)

    def revert(self, model: nn.Module) -> nn.Module:
        """Give each layer converted by :meth:`apply` back its original class, sharing the trained
        parameters and buffers (the same tensors)."""
        return self._revert(model, "")

    def _revert(self, module: nn.Module, name: str) -> nn.Module:
        original = self._originals.get(name)
        reverted = module
        if original is not None and isinstance(module, _SYNCHRONISED):
            reverted = _rebuild_batch_norm(module, original)
        for child_name, child in module.named_children():
            path = f"{name}.{child_name}" if name else child_name
            reverted.add_module(child_name, self._revert(child, path))
        return reverted


def trainer_kwargs_with_manual_sync(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The ``Trainer`` keyword arguments ``kwargs``, with ``sync_batchnorm=True`` turned into a
    :class:`ManualSyncBatchNorm` plugin (a new dict; ``kwargs`` is not modified).

    - ``sync_batchnorm`` absent or false: ``kwargs`` unchanged.
    - otherwise ``sync_batchnorm`` becomes False and ``ManualSyncBatchNorm()`` is appended to ``plugins``
      (None, one plugin or a list), unless ``plugins`` already holds a ``ManualSyncBatchNorm``;
    - if ``plugins`` holds another ``LayerSync`` plugin (e.g. ``TorchSyncBatchNorm``, explicitly chosen),
      ``kwargs`` are unchanged and Lightning's own rules apply.

    Args:
        kwargs: keyword arguments for :class:`lightning.pytorch.Trainer`.

    Returns:
        The keyword arguments to build the ``Trainer`` with.
    """
    result = dict(kwargs)
    if not result.get("sync_batchnorm"):
        return result
    plugins = result.get("plugins")
    plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    layer_syncs = [plugin for plugin in plugins if isinstance(plugin, LayerSync)]
    if any(not isinstance(plugin, ManualSyncBatchNorm) for plugin in layer_syncs):
        return result
    if not layer_syncs:
        plugins.append(ManualSyncBatchNorm())
    result.update(sync_batchnorm=False, plugins=plugins)
    return result
