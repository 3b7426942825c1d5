"""What the tool subcommands (``bench``, ``summary``, ``experiment``, ``gradcheck``) share: ``argparse``
types, and the ``--out DIR`` / ``--json PATH`` options with the code that writes them.

``--out DIR`` writes the command's figures (PNG) and ``NAME.json`` into ``DIR``; ``--json PATH`` writes the
JSON alone; both may be given. Every file written is named on stderr. ``--json -`` means stdout, for every
tool: the JSON is then all that goes to stdout, and the text a tool prints (its table) goes to stderr
(:func:`report_stream`), so that ``cs231n TOOL --json - | jq ...`` reads the JSON alone.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # the figures' type alone: bench, which draws none, does not import matplotlib
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


STDOUT = "-"
"""The ``--json`` value that means stdout."""


def add_json_argument(parser: argparse.ArgumentParser, what: str = "the JSON") -> None:
    """Add ``--json PATH`` (``-``: stdout); its value is a ``str`` (``None`` when not given)."""
    parser.add_argument(
        "--json",
        default=None,
        metavar="PATH",
        help=f"write {what} to PATH ('{STDOUT}': stdout, the printed table then going to stderr)",
    )


def machine() -> str:
    """The machine a measurement ran on, for the record: the CPU model (from ``/proc/cpuinfo`` where there
    is one), its logical CPU count, the OS and the Python version.

    Examples::

        >>> "logical CPUs" in machine()
        True
    """
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} logical CPUs, {system}, Python {platform.python_version()}"


def run_record() -> dict[str, str]:
    """``{"date": ..., "machine": ...}``: when (UTC, ISO 8601) and where a measurement ran, for the JSON a
    command writes (the docs print both beside the tables they render from it).

    Examples::

        >>> sorted(run_record())
        ['date', 'machine']
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    return {"date": now.isoformat(timespec="seconds"), "machine": machine()}


def add_output_arguments(parser: argparse.ArgumentParser, name: str, figures: str = "the figures") -> None:
    """Add ``--out DIR`` (``figures`` and ``NAME.json``) and ``--json PATH`` (the JSON alone; ``-``:
    stdout)."""
    parser.add_argument("--out", type=Path, default=None, help=f"write {figures} and {name}.json here")
    add_json_argument(parser, "the JSON alone")


def report_stream(args: argparse.Namespace) -> TextIO:
    """Where a tool prints its text: stdout, or stderr when ``--json -`` gives stdout to the JSON."""
    return sys.stderr if getattr(args, "json", None) == STDOUT else sys.stdout


def write_json(target: str | Path, payload: Mapping[str, Any], indent: int | None = None) -> None:
    """Write ``payload`` as JSON to the file ``target`` (its folder created; the path named on stderr), or
    to stdout when ``target`` is ``-``.

    Examples::

        >>> write_json("-", {"passed": True})
        {"passed": true}
    """
    text = json.dumps(payload, indent=indent) + "\n"
    if str(target) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(path, file=sys.stderr)


def write_outputs(
    args: argparse.Namespace,
    name: str,
    payload: Mapping[str, Any],
    figures: Mapping[str, Callable[[], Figure]],
    indent: int | None = None,
) -> None:
    """Write what ``--out`` and ``--json`` (:func:`add_output_arguments`) ask for.

    Args:
        args: the parsed options, with ``out`` and ``json`` (``None`` when not given; ``json`` ``-``: stdout).
        name: the file stem: ``--out DIR`` writes ``DIR/NAME.json``.
        payload: the numbers, JSON-able.
        figures: file name -> a function drawing that figure (called only with ``--out``).
        indent: ``json.dumps`` indentation of the JSON files.
    """
    targets: list[str | Path] = [args.json] if args.json else []
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        targets.append(args.out / f"{name}.json")
        for file_name, figure in figures.items():
            figure().savefig(args.out / file_name, dpi=100)
            print(args.out / file_name, file=sys.stderr)
    for target in targets:
        write_json(target, payload, indent)
