"""Lightning's side of :mod:`torch_cs231n.interop.checkpoint`: checkpoints written with a checksum of their
tensors and verified when read, and ``--ckpt_path last`` resolved to the newest ``last.ckpt`` of the runs of
one experiment."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

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


# Scheduler state that records progress (it changes while training), not a hyper-parameter.
SCHEDULER_PROGRESS = frozenset(
    {"last_epoch", "_step_count", "_last_lr", "base_lrs", "_get_lr_called_within_step", "_is_initial"}
    | {"best", "num_bad_epochs", "cooldown_counter", "mode_worse"}  # ReduceLROnPlateau's
)


def configured_optimizers(configured: Any) -> tuple[list[Optimizer], list[Any]]:
    """The optimizers and the learning-rate schedulers in what ``configure_optimizers`` returned (an
    optimizer, a dict, a list or a tuple of them, nested as Lightning accepts), each list in order."""
    if isinstance(configured, Optimizer):
        return [configured], []
    if isinstance(configured, (LRScheduler, ReduceLROnPlateau)):
        return [], [configured]
    optimizers: list[Optimizer] = []
    schedulers: list[Any] = []
    values = configured.values() if isinstance(configured, Mapping) else configured
    if isinstance(values, (list, tuple)) or isinstance(configured, Mapping):
        for value in values:
            more_optimizers, more_schedulers = configured_optimizers(value)
            optimizers += more_optimizers
            schedulers += more_schedulers
    return optimizers, schedulers


def _same(a: Any, b: Any) -> bool:
    """Equal hyper-parameter values, a list and a tuple of equal items included (``betas``)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b)
    except (RuntimeError, TypeError, ValueError):  # e.g. tensors of several values
        return False


def optimizer_changes(
    checkpoint: Mapping[str, Any], optimizers: list[Optimizer], schedulers: list[Any]
) -> list[str]:
    """The hyper-parameters of freshly configured ``optimizers`` and ``schedulers`` that differ from those
    the checkpoint's run was configured with: one line each, ``"optimizer.lr: checkpoint 0.001, arguments
    0.5"``. Resuming restores the checkpoint's optimizer and scheduler state whole, so these arguments would
    be silently ignored.

    A parameter group's ``lr`` is compared with the checkpoint's ``initial_lr`` when it has one (a
    scheduler has changed ``lr`` since), and not at all for a group a scheduler did not see start (added
    during training). Scheduler state that records progress (:data:`SCHEDULER_PROGRESS`) is not compared.

    Args:
        checkpoint: a Lightning checkpoint (``optimizer_states``, ``lr_schedulers``).
        optimizers: the optimizers the arguments configure (not yet restored).
        schedulers: their learning-rate schedulers.

    Returns:
        The differences; empty when the arguments configure what the checkpoint's run had.

    Examples::

        >>> import torch
        >>> w = [torch.nn.Parameter(torch.zeros(2))]
        >>> saved = {"optimizer_states": [torch.optim.SGD(w, lr=0.1).state_dict()]}
        >>> optimizer_changes(saved, [torch.optim.SGD(w, lr=0.5)], [])
        ['optimizer.lr: checkpoint 0.1, arguments 0.5']
        >>> optimizer_changes(saved, [torch.optim.SGD(w, lr=0.1)], [])
        []
    """
    changes = []
    saved_optimizers = checkpoint.get("optimizer_states") or []
    has_schedulers = bool(checkpoint.get("lr_schedulers"))
    for i, (optimizer, saved) in enumerate(zip(optimizers, saved_optimizers)):
        name = "optimizer" if len(optimizers) == 1 else f"optimizer {i}"
        for j, (group, saved_group) in enumerate(zip(optimizer.param_groups, saved["param_groups"])):
            where = name if j == 0 else f"{name} (param group {j})"
            options = set(group) - {"params", "initial_lr"}
            saved_options = set(saved_group) - {"params", "initial_lr"}
            if options - saved_options and saved_options - options:  # (one-way: another torch version)
                changes.append(
                    f"{where}: options {sorted(saved_options)} in the checkpoint, {sorted(options)} in the "
                    "arguments (another optimizer class)"
                )
                continue
            for key in sorted(options & saved_options):
                value, saved_value = group[key], saved_group[key]
                if key == "lr" and "initial_lr" in saved_group:
                    value, saved_value = group.get("initial_lr", value), saved_group["initial_lr"]
                elif key == "lr" and has_schedulers:
                    continue  # added while a scheduler ran: its first lr is unknown
                if not _same(value, saved_value):
                    changes.append(f"{where}.{key}: checkpoint {saved_value!r}, arguments {value!r}")
    for i, (scheduler, saved) in enumerate(zip(schedulers, checkpoint.get("lr_schedulers") or [])):
        name = "lr_scheduler" if len(schedulers) == 1 else f"lr_scheduler {i}"
        state = scheduler.state_dict()
        if set(state) - set(saved) and set(saved) - set(state):
            changes.append(
                f"{name}: state {sorted(saved)} in the checkpoint, {sorted(state)} in the arguments"
            )
            continue
        for key in sorted((set(state) & set(saved)) - SCHEDULER_PROGRESS):
            if not _same(state[key], saved[key]) and not callable(state[key]):
                changes.append(f"{name}.{key}: checkpoint {saved[key]!r}, arguments {state[key]!r}")
    return changes
