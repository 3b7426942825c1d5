"""Lightning's side of :mod:`torch_cs231n.checkpoint`: checkpoints written with a checksum of their tensors
and verified when read, and ``--ckpt_path last`` resolved to the newest ``last.ckpt`` of the runs of one
experiment."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from torch_cs231n.checkpoint import add_checksum, load_checkpoint


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


def find_last_checkpoint(search: list[tuple[Path, str]]) -> Path:
    """The most recently written ``last.ckpt`` among the files that match ``folder.glob(pattern)`` for the
    ``(folder, pattern)`` pairs of ``search``.

    The patterns have a fixed depth, as a run of one experiment writes its checkpoints (e.g.
    ``("lightning_logs/two_layer_default", "*/checkpoints/last.ckpt")``): a run of another experiment in a
    folder below (a logger ``name`` that continues this one's, ``cs231n tune`` trials) is never found.

    Args:
        search: ``(folder, glob pattern)`` pairs.

    Returns:
        The newest matching file.

    Raises:
        FileNotFoundError: there is none; the message lists the places searched.

    Examples::

        >>> import tempfile, os
        >>> root = Path(tempfile.mkdtemp())
        >>> for run in ("version_0", "version_1", "sub/version_0"):
        ...     (root / run / "checkpoints").mkdir(parents=True)
        ...     (root / run / "checkpoints" / "last.ckpt").touch()
        >>> os.utime(root / "version_0/checkpoints/last.ckpt", (0, 0))  # written long ago
        >>> find_last_checkpoint([(root, "*/checkpoints/last.ckpt")]).relative_to(root).as_posix()
        'version_1/checkpoints/last.ckpt'
    """
    found = [p for folder, pattern in search if folder.is_dir() for p in folder.glob(pattern) if p.is_file()]
    if not found:
        where = ", ".join(f"'{folder.absolute() / pattern}'" for folder, pattern in search) or "(no folder)"
        raise FileNotFoundError(
            f"--ckpt_path last: no last.ckpt of a run matches {where}. Pass the path of a checkpoint "
            "instead, or check --trainer.logger.init_args.save_dir / name (or --checkpoint.dirpath) of the "
            "run to resume."
        )
    return max(found, key=lambda p: p.stat().st_mtime)
