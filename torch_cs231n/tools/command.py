"""What the tool subcommands (``summary``, ``experiment``, ``gradcheck``) share: ``argparse`` types, and the
``--out DIR`` / ``--json PATH`` options with the code that writes them.

``--out DIR`` writes the command's figures (PNG) and ``NAME.json`` into ``DIR``; ``--json PATH`` writes the
JSON alone; both may be given. Every file written is named on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure


def positive_int(text: str) -> int:
    """An ``argparse`` type: an int >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """An ``argparse`` type: a finite float > 0."""
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def add_output_arguments(parser: argparse.ArgumentParser, name: str, figures: str = "the figures") -> None:
    """Add ``--out DIR`` (``figures`` and ``NAME.json``) and ``--json PATH`` (the JSON alone)."""
    parser.add_argument("--out", type=Path, default=None, help=f"write {figures} and {name}.json here")
    parser.add_argument("--json", type=Path, default=None, help="write the JSON alone to this path")


def write_outputs(
    args: argparse.Namespace,
    name: str,
    payload: Mapping[str, Any],
    figures: Mapping[str, Callable[[], Figure]],
    indent: int | None = None,
) -> None:
    """Write what ``--out`` and ``--json`` (:func:`add_output_arguments`) ask for.

    Args:
        args: the parsed options, with ``out`` and ``json`` (``None`` when not given).
        name: the file stem: ``--out DIR`` writes ``DIR/NAME.json``.
        payload: the numbers, JSON-able.
        figures: file name -> a function drawing that figure (called only with ``--out``).
        indent: ``json.dumps`` indentation of the JSON files.
    """
    paths = [args.json] if args.json else []
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        paths.append(args.out / f"{name}.json")
        for file_name, figure in figures.items():
            figure().savefig(args.out / file_name, dpi=100)
            print(args.out / file_name, file=sys.stderr)
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=indent) + "\n")
        print(path, file=sys.stderr)
