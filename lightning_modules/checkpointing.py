"""Lightning's side of :mod:`torch_cs231n.interop.checkpoint`: checkpoints written with a checksum of their
tensors
and verified when read, and ``--ckpt_path last`` resolved to the newest ``last.ckpt`` of an experiment."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from torch_cs231n.interop.checkpoint import add_checksum, load_checkpoint


class ChecksummedCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that stores a checksum of the tensors in every checkpoint it saves and verifies
    it in every checkpoint it loads (always with ``weights_only=True``); load failures name the file."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        super().save_checkpoint(add_checksum(checkpoint), path, storage_options)

    def load_checkpoint(
        self, path: Any, map_location: Callable | Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return load_checkpoint(path, map_location="cpu" if map_location is None else map_location)


def find_last_checkpoint(search_dirs: list[Path]) -> Path:
    """The most recently written ``last.ckpt`` in or below any of ``search_dirs``.

    Raises:
        FileNotFoundError: there is none; the message lists the folders searched.
    """
    found = [p for d in search_dirs if d.is_dir() for p in d.rglob("last.ckpt")]
    if not found:
        where = ", ".join(f"'{d.absolute()}'" for d in search_dirs) or "(no folder)"
        raise FileNotFoundError(
            f"--ckpt_path last: no last.ckpt in or below {where}. Pass the path of a checkpoint instead, or "
            "check --trainer.logger.init_args.save_dir / name (or --checkpoint.dirpath) of the run to resume."
        )
    return max(found, key=lambda p: p.stat().st_mtime)
