"""Every ``cs231n ...`` command of the bash blocks of README.md and the docs pages (``docs/**/*.md``) still
works, each in a tiny form.

The commands run as the pages write them, from a scratch folder that stands in for the repository root
(``configs/`` linked into it), through :func:`lightning_modules.dispatcher.main`:
    - ``fit`` / ``validate`` / ``test`` / ``predict``: parsed with ``--print_config`` appended, which proves
      the subcommand, the config path (layered on configs/base.yaml) and every option; the resolved config
      must name a model and the CIFAR-10 data module. (tests/test_cli.py trains every config for real.)
    - ``tune``: a real study of one trial on generated data (tiny fit options appended); it writes the
      ``lightning_logs/tune/two_layer/best.yaml`` that the README's next command fits.
    - ``plot``: for real, on the log of a tiny fit of the config the README names.
    - ``summary``: for real (it builds the model alone).
    - ``experiment``, ``gradcheck``, ``bench``: ``--help`` (minutes of compute; each has its own tests).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from cifar_fixtures import tiny_fit_args, write_npz

from lightning_modules.cli import run_lightning
from lightning_modules.dispatcher import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS_PAGES = (p for p in (ROOT / "docs").rglob("*.md") if not any(part.startswith("_") for part in p.parts))
PAGES = [README, *sorted(DOCS_PAGES)]
LIGHTNING = ("fit", "validate", "test", "predict")
LONG = {"experiment": "minutes of training", "gradcheck": "every op's check", "bench": "a benchmark"}


def readme_commands() -> list[list[str]]:
    """Each ``cs231n`` command of the bash blocks of README.md and the docs pages as argv (without
    ``cs231n``): continuation lines joined, comments and leading ``VAR=value`` assignments dropped."""
    commands = []
    fence = r"```(?:bash|sh|shell)\n(.*?)```"
    blocks = [block for page in PAGES for block in re.findall(fence, page.read_text(), re.S)]
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
                words = words[1:]
            if words and words[0] == "cs231n":
                commands.append(words[1:])
    return commands


COMMANDS_IN_README = readme_commands()
EVERY_STEP = "--trainer.log_every_n_steps=1"  # a tiny fit logs something for `plot`


def tiny_fit_options(npz: Path) -> list[str]:
    return tiny_fit_args(npz, "--trainer.log_every_n_steps=1")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A scratch repository root: ``configs/`` linked in, and a tiny npz."""
    root = tmp_path_factory.mktemp("readme")
    (root / "configs").symlink_to(ROOT / "configs", target_is_directory=True)
    write_npz(root / "tiny.npz", n_train=64, n_test=16)
    return root


def test_the_readme_has_the_commands() -> None:
    subcommands = {argv[0] for argv in COMMANDS_IN_README}
    assert {"fit", "validate", "predict", "plot", "summary", "tune"} <= subcommands, subcommands
    assert subcommands <= set(COMMANDS), f"README commands {subcommands - set(COMMANDS)} do not exist"


@pytest.mark.parametrize("argv", COMMANDS_IN_README, ids=lambda argv: " ".join(argv)[:90])
def test_readme_command_works(argv: list[str], workdir: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(workdir)
    subcommand = argv[0]
    if subcommand in LONG:
        with pytest.raises(SystemExit) as exit_:
            main([*argv, "--help"])
        assert exit_.value.code == 0, f"`cs231n {' '.join(argv)} --help` failed ({LONG[subcommand]})"
        return
    if subcommand in LIGHTNING:
        for word in argv:  # a config that an earlier README command writes (tune's best.yaml)
            if word.startswith("lightning_logs/") and word.endswith(".yaml") and not Path(word).is_file():
                pytest.skip(f"{word} is written by the README's `cs231n tune` command (run it first)")
        with pytest.raises(SystemExit) as exit_:
            main([*argv, "--print_config"])
        assert exit_.value.code in (0, None), f"`cs231n {' '.join(argv)}` does not parse"
        config = yaml.safe_load(capsys.readouterr().out)
        assert config["model"]["class_path"] and config["seed_everything"] == 0, config
        assert config["data"]["class_path"] == "lightning_modules.data.CIFAR10DataModule", config["data"]
        return
    if subcommand == "tune":
        argv = [*argv, "--n-trials", "1", *tiny_fit_args(workdir / "tiny.npz", EVERY_STEP)]
        assert main(argv) == 0, f"`cs231n {' '.join(argv)}` failed"
        best = Path("lightning_logs/tune/two_layer/best.yaml")
        assert best.is_file(), "tune wrote no best.yaml where the README's next command reads it"
        return
    if subcommand == "plot":  # the log of a tiny fit of the config the README names
        name = Path(argv[1]).parent.name
        tiny = tiny_fit_args(workdir / "tiny.npz", EVERY_STEP)
        run_lightning(["fit", f"--config=configs/{name}.yaml", *tiny])
        assert main(argv) == 0, f"`cs231n {' '.join(argv)}` failed"
        assert list(Path(argv[1]).glob("*.png")), "plot wrote no figure"
        return
    assert main(argv) == 0, f"`cs231n {' '.join(argv)}` failed"
