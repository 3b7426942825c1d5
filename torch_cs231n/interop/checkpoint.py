"""Checkpoint files that cannot lie: a checksum of every tensor, verified on load, and load errors that
name the file and say what to do.

A checkpoint written through :func:`add_checksum` carries ``checkpoint["cs231n_checksum"]``: the SHA-256
of all its tensors (names, dtypes, shapes and bytes, in the order the checkpoint holds them).
:func:`load_checkpoint` reads a file with ``torch.load(..., weights_only=True)`` (never executing
pickled code) and recomputes the checksum, so flipped bytes inside a tensor — which ``torch.load`` does not
notice — are refused instead of evaluated. Files without a checksum (written by other tools) load as before.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

CHECKSUM_KEY = "cs231n_checksum"
_ALGORITHM = "sha256"


class CheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be used: unreadable, truncated, not a checkpoint, or corrupt.

    A ``RuntimeError``, the type ``torch.load`` raises for an unreadable archive.
    """


def _tensors(obj: Any, path: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """``(path, tensor)`` for every tensor nested in dicts, lists and tuples, in their order."""
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from _tensors(value, f"{path}/{key}")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _tensors(value, f"{path}/{i}")


def tensor_checksum(checkpoint: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of every tensor in ``checkpoint`` except under :data:`CHECKSUM_KEY`.

    Args:
        checkpoint: a (nested) mapping such as a Lightning checkpoint or a state dict.

    Returns:
        64 hex digits; equal for equal tensors with equal names, dtypes and shapes.

    Examples::

        >>> a = tensor_checksum({"w": torch.zeros(2)})
        >>> a == tensor_checksum({"w": torch.zeros(2)}), a == tensor_checksum({"w": torch.ones(2)})
        (True, False)
    """
    digest = hashlib.new(_ALGORITHM)
    for path, tensor in _tensors({k: v for k, v in checkpoint.items() if k != CHECKSUM_KEY}):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{path}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            digest.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def add_checksum(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Store the checksum of ``checkpoint``'s tensors in it (under :data:`CHECKSUM_KEY`); returns it."""
    checkpoint[CHECKSUM_KEY] = {"algorithm": _ALGORITHM, "tensors": tensor_checksum(checkpoint)}
    return checkpoint


def verify_checksum(checkpoint: Mapping[str, Any], source: str) -> None:
    """Raise :class:`CheckpointError` naming ``source`` when the saved checksum does not match the tensors
    (nothing to check when the checkpoint carries none)."""
    saved = checkpoint.get(CHECKSUM_KEY)
    if saved is None:
        return
    if not isinstance(saved, Mapping) or saved.get("algorithm") != _ALGORITHM:
        raise CheckpointError(
            f"{source}: unknown checksum record {saved!r}; the file was not written by this tool"
        )
    if tensor_checksum(checkpoint) != saved.get("tensors"):
        raise CheckpointError(
            f"{source}: the tensors do not match the checksum saved with them — the file is corrupt (changed "
            "bytes, e.g. a faulty disk or an interrupted copy). Use another checkpoint (the run folder keeps "
            "the best and the last one) or copy the file again from where it was written."
        )


def state_dict_mismatch(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> list[str]:
    """What keeps ``given`` from loading strictly into a model whose state dict is ``expected``.

    Returns:
        One line per kind of problem (missing keys, unexpected keys, shapes), empty when it fits.

    Examples::

        >>> state_dict_mismatch({"w": torch.zeros(2, 3)}, {"w": torch.zeros(3, 2), "b": torch.zeros(2)})
        ['unexpected keys (1): b', 'shapes (1): w: file (3, 2) vs model (2, 3)']
    """
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    shapes = sorted(
        f"{k}: file {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(given)
        if given[k].shape != expected[k].shape
    )
    return [
        f"{label} ({len(keys)}): {', '.join(keys)}"
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shapes", shapes))
        if keys
    ]


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(..., weights_only=True)`` and verify its tensor checksum.

    Args:
        path: a ``.ckpt`` / ``.pt`` file written by ``torch.save`` (e.g. a Lightning checkpoint).
        map_location: as for :func:`torch.load`.

    Returns:
        The loaded object (a dict for checkpoints).

    Raises:
        FileNotFoundError: ``path`` does not exist (the message gives the absolute path looked at).
        IsADirectoryError: ``path`` is a folder (the message names a few of the checkpoints in it).
        CheckpointError: the file is truncated, not a PyTorch file, holds code-executing objects, or its
            tensors do not match their saved checksum. The message names the file and what to do.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(str(p.relative_to(path)) for p in path.rglob("*.ckpt"))
        inside = (
            f"it holds {len(found)} .ckpt files, e.g. {', '.join(found[:3])}" if found else "it holds none"
        )
        raise IsADirectoryError(
            f"checkpoint '{path}' is a folder, not a checkpoint file ({inside}); pass the path of one .ckpt "
            "file, e.g. lightning_logs/<name>/version_<n>/checkpoints/last.ckpt"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint '{path}' does not exist (looked for '{path.absolute()}'); pass the path of a .ckpt "
            "file, e.g. lightning_logs/<name>/version_<n>/checkpoints/last.ckpt"
        )
    try:
        loaded = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message suggests weights_only=False, which would run arbitrary code from the file: not here.
        raise CheckpointError(
            f"{path}: refused to load: the file holds objects other than tensors and plain Python values "
            f"({type(err).__name__}), so it is not a checkpoint this tool wrote, or it is damaged. Use a "
            "checkpoint written by `cs231n fit` (or a plain state dict of tensors)."
        ) from None
    except Exception as err:  # a damaged file makes torch.load fail in many ways (zip, pickle, KeyError...)
        cause = f"{type(err).__name__}: {str(err).split('. ')[0]}" if str(err) else type(err).__name__
        raise CheckpointError(
            f"{path}: cannot read the checkpoint ({cause}): the file is truncated (e.g. a run killed while "
            "saving, or an incomplete copy) or not a PyTorch checkpoint. Use another checkpoint (the run "
            "folder keeps the best and the last one) or copy the file again."
        ) from err
    if isinstance(loaded, Mapping):
        verify_checksum(loaded, str(path))
    return loaded
