"""The lecture's small experiments, each a function returning the numbers and a ``cs231n experiment NAME``
subcommand that prints them and draws their figures.

Experiments (:data:`EXPERIMENTS`):
    activations   weight initialisation: activation statistics through a deep tanh/ReLU net
                  (:mod:`torch_cs231n.experiments.activations`)
    init-scale    overfitting 50 images with 3- and 5-layer nets over weight scales x learning rates
                  (:mod:`torch_cs231n.experiments.init_scale`)
    optimizers    SGD, momentum, RMSProp, Adagrad and Adam on a 5-layer net; Adagrad's shrinking steps
                  (:mod:`torch_cs231n.experiments.optimizers`)
    batchnorm     batch norm across weight scales and batch sizes; layer norm at small batches
                  (:mod:`torch_cs231n.experiments.batchnorm`)
    dropout       a two-layer net on 500 images with and without dropout
                  (:mod:`torch_cs231n.experiments.dropout`)

The training experiments share their data preparation, training loop and options
(:mod:`torch_cs231n.experiments._training`); each needs CIFAR-10 (``--data``, by default
``../shared/data/cifar10_train.npz``) and writes ``--out DIR`` (figures and ``NAME.json``) or ``--json PATH``.
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
    "init-scale": (
        "torch_cs231n.experiments.init_scale",
        "overfit 50 images with 3- and 5-layer nets over weight scales x learning rates (heat maps)",
    ),
    "optimizers": (
        "torch_cs231n.experiments.optimizers",
        "SGD, SGD+momentum, RMSProp, Adagrad and Adam on a 5-layer net; Adagrad vs Adam update sizes",
    ),
    "batchnorm": (
        "torch_cs231n.experiments.batchnorm",
        "a 6-layer net with and without batch norm across weight scales; batch size; layer vs batch norm",
    ),
    "dropout": (
        "torch_cs231n.experiments.dropout",
        "a two-layer net on 500 images with keep ratios 1 and 0.25: the train/val gap dropout closes",
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
