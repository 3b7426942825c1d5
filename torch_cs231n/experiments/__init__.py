"""The lecture's small experiments, each a function returning the numbers and a ``cs231n experiment NAME``
subcommand that prints them and draws their figures.

Experiments (:data:`EXPERIMENTS`):
    activations   weight initialisation: activation statistics through a deep tanh/ReLU net
                  (:mod:`torch_cs231n.experiments.activations`)
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

EXPERIMENTS: dict[str, tuple[str, str]] = {
    "activations": (
        "torch_cs231n.experiments.activations",
        "weight initialisation: per-layer activation statistics of a 6x4096 tanh/ReLU net",
    ),
}
"""Name -> (module, one line of help). A module provides ``add_arguments(parser)`` and ``run(args) -> int``;
it is imported only when its experiment runs."""


def main(argv: Sequence[str] | None = None) -> int:
    """``cs231n experiment NAME [options]``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="cs231n experiment",
        description="The lecture's experiments; `cs231n experiment NAME --help` gives the options of one.",
    )
    names = parser.add_subparsers(dest="name", metavar="NAME", required=True)
    for name, (module, help_text) in EXPERIMENTS.items():
        # no help of its own: `-h` goes on to the experiment's parser, which knows the options
        names.add_parser(name, help=help_text, add_help=False).set_defaults(module=module)
    args, rest = parser.parse_known_args(argv)
    module = importlib.import_module(args.module)
    sub_parser = argparse.ArgumentParser(
        prog=f"cs231n experiment {args.name}",
        description=module.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(sub_parser)
    return module.run(sub_parser.parse_args(rest))
