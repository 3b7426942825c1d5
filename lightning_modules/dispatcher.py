"""The ``cs231n`` console script: one line of help per subcommand, dispatch, short errors, less noise.

    cs231n fit --config configs/two_layer_default.yaml      # also validate / test / predict
    cs231n plot LOG_DIR [--out DIR]                          # CS231n Solver figures from a CSV log
    cs231n --debug fit ...                                   # a failing command with its full traceback

This module imports only the standard library: each subcommand imports what it needs when it runs, so
``cs231n --help`` and ``cs231n plot --help`` answer without loading torch or Lightning. ``fit``, ``validate``,
``test`` and ``predict`` run :func:`lightning_modules.cli.run_lightning`; the other subcommands their
modules' ``main``.

A mistake in the arguments, a config, a checkpoint or the data (:data:`lightning_modules.cli.USER_ERRORS`,
and jsonargparse's parse errors) is reported as ``cs231n SUBCOMMAND: error: MESSAGE`` and a hint, with exit
status 2; ``--debug`` (anywhere on the command line) shows the full traceback or parser message instead.
Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Sequence

# Subcommand -> one line of help. LightningCLI runs fit, validate, test and predict; main() dispatches the
# others to their modules.
COMMANDS: dict[str, str] = {
    "fit": "train a model (resume with --ckpt_path PATH|last)",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the test split",
    "predict": "predict with a checkpoint; writes predictions.csv into the run folder",
    "plot": "the CS231n Solver figures (loss, accuracy, first-layer weights) of a run",
    "bench": "manual vs built-in ops: speed and saved memory",
    "summary": "a config's model layer by layer: output shapes, activations, parameters, memory",
    "experiment": "the lecture's experiments, e.g. `experiment activations` (weight initialisation)",
    "gradcheck": "numeric gradient check of every op's backward (exit 0 when all rel errors < 1e-7)",
    "tune": "hyperparameter search with Optuna (--search SPACE.yaml); writes the best trial's config",
}
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
DEBUG_FLAG = "--debug"

# Messages of the libraries the project builds on that say nothing to a user of this command line:
# Lightning's advertisement, a deprecation inside Lightning's own code, the ModelCheckpoint notice that every
# resumed or evaluated run writes to a new run folder (which is this tool's design), and torch's note that a
# CUDA toolkit folder exists on a machine without a GPU (printed when torch.compile loads its C++ builder).
_INHERITED_WARNINGS = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"The dirpath has changed from .* won't be reloaded",
)
_INHERITED_LOG_LINES = {
    "lightning.pytorch.utilities.rank_zero": ("💡 Tip: ",),
    "torch.utils.cpp_extension": ("No CUDA runtime is found",),
}


class _DropLines(logging.Filter):
    """Drops the log records whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: Sequence[str]) -> None:
        super().__init__()
        self.prefixes = tuple(prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


def quiet_inherited_noise() -> None:
    """Filter the inherited messages listed above (and nothing else: other warnings stay visible)."""
    for pattern in _INHERITED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name, prefixes in _INHERITED_LOG_LINES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLines) for f in logger.filters):
            logger.addFilter(_DropLines(prefixes))


def usage() -> str:
    """The top-level help: every subcommand with a line each, and the ``--debug`` switch."""
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    return "\n".join(
        [
            f"usage: cs231n [--debug] {{{','.join(COMMANDS)}}} ...",
            "",
            "The CS231n layers as PyTorch operators, trained with Lightning.",
            "",
            "subcommands:",
            *lines,
            "",
            "options:",
            f"  {DEBUG_FLAG:<{width}}  on an error, show the full traceback (or the parser's full message)",
            f"  {'':<{width}}  instead of the one-line message; anywhere on the command line",
            "",
            "`cs231n SUBCOMMAND --help` lists the options of one, e.g. cs231n fit --help.",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cs231n`` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args
    args = [arg for arg in args if arg != DEBUG_FLAG]
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr, flush=True)
        return 0 if args else 2
    if args[0] not in COMMANDS and not args[0].startswith("-"):
        print(f"{usage()}\n\ncs231n: error: unknown subcommand {args[0]!r}", file=sys.stderr, flush=True)
        return 2
    quiet_inherited_noise()
    if debug:
        from .cli import CS231nArgumentParser

        CS231nArgumentParser.debug = True
    try:
        return _dispatch(args, None if argv is None and not debug else args)
    except Exception as err:
        if debug or not _is_user_error(err):
            raise
        print(
            f"cs231n {args[0]}: error: {err}\n  (add --debug to see where it was raised)",
            file=sys.stderr,
            flush=True,
        )
        return 2
    finally:
        if debug:
            CS231nArgumentParser.debug = False


def _dispatch(args: list[str], lightning_args: list[str] | None) -> int:
    """Run subcommand ``args[0]``; ``lightning_args`` (``None``: ``sys.argv``) for the Lightning ones."""
    command, rest = args[0], args[1:]
    if command == "plot":
        from torch_cs231n.tools.plotting import main as plot_main

        return plot_main(rest)
    if command == "bench":
        from torch_cs231n.tools import bench  # imported lazily: `fit` must not depend on the benchmark module

        return bench.main(rest)
    if command == "summary":
        from torch_cs231n.tools import summary

        return summary.main(rest)
    if command == "experiment":
        from torch_cs231n import experiments

        return experiments.main(rest)
    if command == "gradcheck":
        from torch_cs231n.tools import gradcheck

        return gradcheck.main(rest)
    if command == "tune":
        from . import tune  # imported lazily: `fit` must not depend on Optuna

        return tune.main(rest)
    from .cli import run_lightning

    run_lightning(lightning_args)
    return 0


def _is_user_error(err: Exception) -> bool:
    """Whether ``err`` reports a mistake in the arguments, files or data (see the module doc)."""
    if isinstance(err, (FileNotFoundError, IsADirectoryError)):
        return True
    from .cli import USER_ERRORS

    return isinstance(err, USER_ERRORS)


if __name__ == "__main__":
    sys.exit(main())
