"""torch_cs231n.interop.checkpoint: tensor checksums, and load errors that name the file and never advise
``weights_only=False``."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from lightning_modules.checkpointing import optimizer_changes
from torch_cs231n.interop.checkpoint import (
    CHECKSUM_KEY,
    CheckpointError,
    add_checksum,
    load_checkpoint,
    state_dict_mismatch,
    tensor_checksum,
)


def _checkpoint() -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "epoch": 3,
        "state_dict": {"fc.weight": torch.randn(64, 32, generator=g), "fc.bias": torch.zeros(64)},
        "optimizer_states": [{"state": {0: {"step": torch.tensor(5.0)}}}],
    }


def flip_tensor_byte(path: Path) -> None:
    """Flip one byte in the middle of the largest tensor's storage inside a ``torch.save`` zip file."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = (int.from_bytes(f.read(2), "little") for _ in range(2))
        offset = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x5A]))


def test_checksum_covers_every_tensor_and_only_tensors() -> None:
    a, b = _checkpoint(), _checkpoint()
    assert tensor_checksum(a) == tensor_checksum(b), "equal checkpoints must have equal checksums"
    b["optimizer_states"][0]["state"][0]["step"] += 1
    assert tensor_checksum(a) != tensor_checksum(b), "a changed optimizer-state tensor went unnoticed"
    c = _checkpoint()
    c["state_dict"]["fc.weight"] = c["state_dict"]["fc.weight"].T.contiguous().T  # same values, new layout
    assert tensor_checksum(a) == tensor_checksum(c), "the checksum must not depend on the memory layout"
    d = _checkpoint()
    d["state_dict"]["fc.bias"] = torch.zeros(64, dtype=torch.float64)
    assert tensor_checksum(a) != tensor_checksum(d), "a dtype change went unnoticed"
    assert tensor_checksum(add_checksum(_checkpoint())) == tensor_checksum(a), "the record hashes itself"


def test_round_trip_verifies(tmp_path: Path) -> None:
    path = tmp_path / "good.ckpt"
    torch.save(add_checksum(_checkpoint()), path)
    loaded = load_checkpoint(path)
    assert CHECKSUM_KEY in loaded and loaded["epoch"] == 3, "the checkpoint did not load as saved"


def test_flipped_bytes_in_a_tensor_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "flipped.ckpt"
    torch.save(add_checksum(_checkpoint()), path)
    flip_tensor_byte(path)
    torch.load(path, weights_only=True)  # torch itself does not notice: that is what the checksum is for
    with pytest.raises(CheckpointError, match="do not match the checksum") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value), f"the error does not name the file: {err.value}"


@pytest.mark.parametrize("damage", ["truncated", "garbage", "pickled_object"])
def test_unreadable_files_are_named_and_never_suggest_weights_only_false(damage: str, tmp_path: Path) -> None:
    path = tmp_path / f"{damage}.ckpt"
    if damage == "truncated":
        torch.save(add_checksum(_checkpoint()), path)
        path.write_bytes(path.read_bytes()[:-200])
    elif damage == "garbage":
        path.write_bytes(b"this is not a checkpoint\n" * 50)
    else:
        torch.save({"module": torch.nn.ReLU()}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert str(path) in message, f"the error does not name the file: {message}"
    assert "weights_only" not in message, f"the error must not advise weights_only=False: {message}"
    assert "another checkpoint" in message or "checkpoint written by" in message, (
        f"the error does not say what to do: {message}"
    )
    assert isinstance(err.value, RuntimeError), "CheckpointError must be a RuntimeError, as torch.load's"


def test_missing_file_gives_the_absolute_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="looked for '/"):
        load_checkpoint(tmp_path / "nope.ckpt")


def test_files_without_a_checksum_still_load(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save({"w": torch.ones(3)}, path)
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(3)), "a plain state dict must load"


def test_state_dict_mismatch_lists_each_problem() -> None:
    expected = {"a": torch.zeros(2), "b": torch.zeros(3)}
    assert state_dict_mismatch(expected, {"a": torch.ones(2), "b": torch.ones(3)}) == [], "a fit was refused"
    problems = state_dict_mismatch(expected, {"a": torch.zeros(4), "c": torch.zeros(1)})
    assert problems == [
        "missing keys (1): b",
        "unexpected keys (1): c",
        "shapes (1): a: file (4,) vs model (2,)",
    ]


def test_optimizer_changes_name_what_a_resume_would_ignore() -> None:
    """A resume restores the optimizer and scheduler state whole: the arguments' values that differ from
    the checkpoint's run are listed; its lr is the schedule's first (``initial_lr``), not the decayed one."""
    weights = [torch.nn.Parameter(torch.zeros(3))]
    trained = torch.optim.Adam(weights, lr=1e-3)
    decay = torch.optim.lr_scheduler.ExponentialLR(trained, gamma=0.9)
    trained.step()
    decay.step()  # lr now 9e-4, initial_lr 1e-3
    saved = {"optimizer_states": [trained.state_dict()], "lr_schedulers": [decay.state_dict()]}

    def fresh(lr: float = 1e-3, gamma: float = 0.9, cls=torch.optim.Adam) -> list[str]:
        optimizer = cls(weights, lr=lr)
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)
        return optimizer_changes(saved, [optimizer], [scheduler])

    assert fresh() == [], "the run's own settings, with its lr decayed since, are no change"
    assert fresh(lr=0.5) == ["optimizer.lr: checkpoint 0.001, arguments 0.5"], fresh(lr=0.5)
    assert fresh(gamma=0.5) == ["lr_scheduler.gamma: checkpoint 0.9, arguments 0.5"], fresh(gamma=0.5)
    changed = fresh(cls=torch.optim.SGD)
    assert len(changed) == 1 and "another optimizer class" in changed[0], changed
