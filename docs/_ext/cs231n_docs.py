"""The pages of the site that are generated from the code and from measured data, when the build starts.

- ``ops/generated/<op>.rst``: one page per operator of :mod:`custom_ops.functional` (its twins and
  derivative support from the runtime facts :data:`custom_ops.registry.OPS`, its docstrings, its module
  twins, the formulas of its file and the file itself);
- ``_generated/*.md``: the operator table, the benchmark table (``docs/bench/*.json``), the coverage tables
  (``docs/coverage/torchvision.json``, ``docs/coverage/timm.json``) and the tables behind the course tools'
  figures (``docs/figures/*.json``), each naming the command, machine and date it records.

Everything an operator page says comes from one of three places, read here and nowhere else: the op's
function in ``custom_ops.functional`` (which names its file), and its runtime facts (twins, double-backward,
forward-mode and vmap support) in :data:`custom_ops.registry.OPS`.
"""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

DOCS = Path(__file__).resolve().parents[1]
ROOT = DOCS.parent
GENERATED = DOCS / "_generated"
OP_PAGES = DOCS / "ops" / "generated"
BENCH_JSON = DOCS / "bench" / "cpu-float32.json"
BENCH_MORE_JSON = DOCS / "bench" / "cpu-float32-activations-attention.json"
COVERAGE_JSON = DOCS / "coverage" / "torchvision.json"
COVERAGE_TIMM_JSON = DOCS / "coverage" / "timm.json"
FIGURES = DOCS / "figures"


def _write(path: Path, text: str) -> None:
    """Write ``text`` unless the file already holds it (so an unchanged page is not rebuilt)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)


def _rst_inline(text: str) -> str:
    """The registry's markdown-ish cells (```x```) as reStructuredText literals (````x````)."""
    return re.sub(r"(?<!`)`([^`]+)`(?!`)", r"``\1``", text)


# ---------------------------------------------------------------------------------------------- operators
def op_names() -> list[str]:
    """Every public function of :mod:`custom_ops.functional`, in the registry's order where it has one."""
    import custom_ops.functional as MF

    specs = _specs()
    ordered = [name for name in specs if name in MF.__all__]
    return ordered + [name for name in MF.__all__ if name not in ordered]


def _specs() -> dict[str, Any]:
    from custom_ops.registry import OPS

    return dict(OPS)


def module_twins() -> dict[str, list[str]]:
    """op name -> the names of its :mod:`custom_ops.nn` classes; a class no spec names goes to the op
    whose name its lower-cased name contains without underscores (``SyncBatchNorm`` -> ``batch_norm``)."""
    import custom_ops.nn as MN

    twins: dict[str, list[str]] = {name: [] for name in op_names()}
    for name, spec in _specs().items():
        for manual, _ in spec.modules:
            cls_name = manual.__name__
            if name in twins and cls_name in MN.__all__ and cls_name not in twins[name]:
                twins[name].append(cls_name)
    placed = {cls for classes in twins.values() for cls in classes}
    for cls_name in MN.__all__:
        if cls_name in placed:
            continue
        owner = next((op for op in twins if op.replace("_", "") in cls_name.lower()), None)
        if owner is None:
            raise RuntimeError(f"custom_ops.nn.{cls_name} belongs to no operator page: name its op in a spec")
        twins[owner].append(cls_name)
    return twins


def _builtin_name(fn: Any) -> str:
    for prefix, namespace in (("torch.nn.functional", torch.nn.functional), ("torch", torch)):
        if getattr(namespace, getattr(fn, "__name__", ""), None) is fn:
            return f"{prefix}.{fn.__name__}"
    return f"{fn.__module__}.{fn.__qualname__}"


def op_page(name: str, classes: list[str], sharing: list[str]) -> str:
    """The reStructuredText of one operator's page."""
    import custom_ops.functional as MF

    fn = getattr(MF, name)
    module = inspect.getmodule(fn)
    source = Path(inspect.getsourcefile(module)).resolve()
    relative = source.relative_to(ROOT)
    spec = _specs().get(name)
    rows = [("functional", f":func:`custom_ops.functional.{name}`")]
    rows.append(("module twin", ", ".join(f":class:`custom_ops.nn.{c}`" for c in classes) or "—"))
    if spec is not None:
        rows.append(("built-in twin", f"``{_builtin_name(spec.builtin)}``"))
        if getattr(spec, "features", ""):
            rows.append(("covers", _rst_inline(spec.features)))
        if getattr(spec, "backward", ""):
            rows.append(("backward", _rst_inline(spec.backward)))
        double = spec.double_backward
        rows.append(("double backward", "yes" if double else "no (``once_differentiable``)"))
        rows.append(("forward mode (``jvp``)", "yes" if spec.forward_ad else "no"))
        rows.append(("``torch.func.vmap``", "yes" if spec.vmap else "no"))
    others = [other for other in sharing if other != name]
    rows.append(
        (
            "file",
            f"``{relative}``" + (f" (also {', '.join(f':doc:`{o}`' for o in others)})" if others else ""),
        )
    )
    table = "\n".join(f"   * - {key}\n     - {value}" for key, value in rows)
    formulas = inspect.getdoc(module) or ""
    formulas_block = "\n".join(f"   {line}" if line else "" for line in formulas.splitlines())
    modules = "\n".join(f".. autoclass:: custom_ops.nn.{c}\n   :no-inherited-members:\n" for c in classes)
    depth = "/".join([".."] * len(OP_PAGES.relative_to(DOCS).parts))
    return f"""{name}
{"=" * len(name)}

.. list-table::
   :stub-columns: 1
   :widths: 1 4

{table}

The formulas
------------

The docstring of ``{relative}``, where the forward and backward are written side by side:

.. code-block:: text

{formulas_block}

Function
--------

.. autofunction:: custom_ops.functional.{name}

{"Module twin" + chr(10) + "-" * 11 + chr(10) + chr(10) + modules if classes else ""}
Source
------

``{relative}``, as the tests run it:

.. literalinclude:: {depth}/../{relative}
   :language: python
   :linenos:
"""


def write_op_pages() -> None:
    import custom_ops.functional as MF

    twins = module_twins()
    files: dict[Path, list[str]] = {}
    for name in op_names():
        files.setdefault(Path(inspect.getsourcefile(getattr(MF, name))).resolve(), []).append(name)
    sharing = {name: names for names in files.values() for name in names}
    for name in op_names():
        _write(OP_PAGES / f"{name}.rst", op_page(name, twins[name], sharing[name]))
    for stale in OP_PAGES.glob("*.rst"):
        if stale.stem not in sharing:
            stale.unlink()
    rows = [
        "| op | module twin | built-in twin | double backward | forward mode | vmap |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    specs = _specs()
    for name in op_names():
        spec = specs.get(name)
        builtin = f"`{_builtin_name(spec.builtin)}`" if spec is not None else "—"
        double = "—" if spec is None else ("yes" if spec.double_backward else "no")
        jvp = "—" if spec is None else ("yes" if spec.forward_ad else "no")
        vmap = "—" if spec is None else ("yes" if spec.vmap else "no")
        classes = ", ".join(f"`{c}`" for c in twins[name]) or "—"
        link = f"[`{name}`](generated/{name}.rst)"
        rows.append(f"| {link} | {classes} | {builtin} | {double} | {jvp} | {vmap} |")
    _write(GENERATED / "ops_table.md", "\n".join(rows) + "\n")


# --------------------------------------------------------------------------------------- measured tables
def _git_date(path: Path) -> str:
    """The date of the commit that last changed ``path`` (for JSON that does not record its own)."""
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%cs", "--", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        out = ""
    return f"{out} (the commit that added the file)" if out else "not recorded"


def _record(data: dict[str, Any], path: Path, command: str) -> str:
    """The lines naming the command, the machine and the date of a measurement."""
    date = data.get("date") or _git_date(path)
    machine = data.get("machine") or "not recorded in the file (this project's 2-core CPU machine)"
    versions = ", ".join(f"{key} {data[key]}" for key in ("torch", "torchvision", "timm") if key in data)
    return (
        f"- **command:** `{command}`\n- **machine:** {machine}\n- **date:** {date}\n"
        + (f"- **versions:** {versions}\n" if versions else "")
        + f"- **data:** `{path.relative_to(ROOT)}`\n"
    )


def _command(prefix: str, argv: list[str], path: Path) -> str:
    """The command that wrote ``path``: its recorded arguments, with the output options (where it wrote its
    files, which does not change what it measured) pointing at ``path``."""
    kept, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word in ("--json", "--markdown"):
            skip = True
        elif not word.startswith(("--json=", "--markdown=")):
            kept.append(word)
    return " ".join([prefix, *kept, "--json", str(path.relative_to(ROOT))])


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1e3:.3f}"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def bench_markdown(path: Path = BENCH_JSON) -> str:
    data = json.loads(path.read_text())
    command = _command("cs231n bench", data.get("argv", []), path)
    head = _record(data, path, command) + (
        f"- **device / dtype / threads:** {data.get('device')} / {data.get('dtype')} / {data.get('threads')};"
        f" fused kernels {'on' if data.get('fused') else 'off'}\n\n"
    )
    rows = [
        "| case | fwd manual (ms) | fwd built-in (ms) | fwd ratio | fwd+bwd manual (ms) "
        "| fwd+bwd built-in (ms) | fwd+bwd ratio | eager ratio | target "
        "| saved manual (MiB) | saved built-in (MiB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in data["rows"]:
        ratios = row.get("ratios", {})
        e2e = row.get("kind") == "e2e" or row.get("train_step_manual") is not None
        manual = row["train_step_manual"] if e2e else row.get("fwdbwd_manual")
        builtin = row["train_step_builtin"] if e2e else row.get("fwdbwd_builtin")
        ratio = (manual / builtin) if manual and builtin else None
        eager = ratios.get("train_step_eager") if e2e else ratios.get("fwdbwd_eager")
        if eager is None and e2e and row.get("train_step_eager") and builtin:
            eager = row["train_step_eager"] / builtin
        target = row.get("target")
        verdict = "" if target is None or ratio is None else (" ok" if ratio <= target else " **miss**")
        saved_m, saved_b = row.get("saved_manual"), row.get("saved_builtin")
        label = f"{row.get('kind') + ' ' if e2e else ''}{row['name']}[{row['label']}]"
        cells = [
            f"`{label}`",
            _ms(None if e2e else row.get("fwd_manual")),
            _ms(None if e2e else row.get("fwd_builtin")),
            _ratio(None if e2e else ratios.get("fwd")),
            _ms(manual),
            _ms(builtin),
            _ratio(ratio) + verdict,
            _ratio(eager),
            "" if target is None else f"≤{target:g}x",
            "" if saved_m is None else f"{saved_m / 2**20:.2f}",
            "" if saved_b is None else f"{saved_b / 2**20:.2f}",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    note = "\n\n*e2e* rows are one SGD training step of the whole model (their fwd+bwd columns).\n"
    return head + "\n".join(rows) + note


def _percent(value: float | None) -> str:
    if value is None:
        return "–"
    return "100%" if value >= 0.9995 else f"{value * 100:.1f}%"


def _difference(value: float | None) -> str:
    return "–" if value is None else f"{value:.0e}"


def coverage_markdown(path: Path = COVERAGE_JSON) -> str:
    """The coverage table of one JSON file of ``torch_cs231n.tools.manual_coverage`` (torchvision's or
    timm's models), with its float64 parity column where the file has it."""
    data = json.loads(path.read_text())
    prefix = "OMP_NUM_THREADS=1 python -m torch_cs231n.tools.manual_coverage"
    command = _command(prefix, data.get("argv", ["--all"]), path)
    models = data["models"]
    complete = sum(1 for m in models if m.get("layer_calls") is not None and m["layer_calls"] >= 0.9995)
    head = _record(data, path, command) + (
        f"\n{complete} of the {len(models)} models make every layer call on manual ops with both applied.\n\n"
    )
    rows = [
        "| model | input | params (M) | layer calls, to_manual | layer calls, + ManualFunctions "
        "| flops, + ManualFunctions | GFLOP (fwd+bwd) | float64 max rel. diff, logits / input grad "
        "| stays built-in |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for m in sorted(models, key=lambda m: m["model"]):
        if m.get("error"):
            rows.append(f"| {m['model']} | | | | | | | | error: {m['error']} |")
            continue
        gflops = m.get("gflops")
        cells = [
            m["model"],
            f"{m['batch']}x{m['input_size']}²",
            f"{m['params_millions']:.1f}",
            _percent(m.get("layer_calls_swap")),
            _percent(m.get("layer_calls")),
            _percent(m.get("flops")),
            "" if gflops is None else f"{gflops:.3g}",
            f"{_difference(m.get('logits_rel_diff'))} / {_difference(m.get('input_grad_rel_diff'))}",
            m.get("builtin") or "–",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(rows) + "\n"


# ------------------------------------------------------------------------------------- the tools' figures
def _figure_json(name: str) -> tuple[dict[str, Any], Path]:
    path = FIGURES / f"{name}.json"
    return json.loads(path.read_text()), path


def _settings(data: dict[str, Any], keys: Iterable[str]) -> str:
    parts = [f"{key.replace('_', ' ')} {data[key]}" for key in keys if data.get(key) is not None]
    seconds = data.get("seconds")
    if seconds is not None:
        parts.append(f"{seconds:.0f} s of compute")
    return "Settings recorded in the JSON: " + ", ".join(parts) + ".\n\n"


def _last(values: Any) -> Any:
    return values[-1] if isinstance(values, list) and values else values


def _last_epoch_mean(losses: list[float], epochs: int) -> float:
    """The mean of the last epoch's per-iteration losses."""
    per_epoch = max(1, len(losses) // max(1, epochs))
    return sum(losses[-per_epoch:]) / len(losses[-per_epoch:])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def figure_tables() -> dict[str, str]:
    """``name -> markdown`` of the numbers behind each figure of ``docs/figures``."""
    tables: dict[str, str] = {}
    summary, _ = _figure_json("summary")
    totals = summary["totals"]
    rows = ["| layer | type | output shape | activations | params |", "| --- | --- | --- | ---: | ---: |"]
    for row in summary["rows"]:
        shape = "x".join(map(str, row["output_shape"]))
        rows.append(
            f"| {row['name']} | {row['type']} | {shape} | {row['activations']:,} | {row['params']:,} |"
        )
    tables["summary"] = (
        f"`{summary.get('config', summary.get('model'))}`: {totals['params']:,} parameters, "
        f"{totals['forward_bytes']:,} bytes of forward activations and {totals['saved_bytes']:,} bytes saved "
        f"for backward per sample ({summary.get('dtype')}).\n\n" + "\n".join(rows) + "\n"
    )
    grad, _ = _figure_json("gradcheck")
    ops = sorted({row["op"] for row in grad["rows"]})
    worst = max(grad["rows"], key=lambda row: row["rel_error"])
    circuits = "\n".join(
        f"- `{c['formula']}` at "
        + ", ".join(f"{k}={_fmt(v)}" for k, v in c["inputs"].items())
        + ": "
        + ", ".join(f"∂f/∂{k} = {_fmt(v)}" for k, v in c["backward"].items())
        for c in grad["circuits"]
    )
    tables["gradcheck"] = (
        f"{len(grad['rows'])} rows over {len(ops)} ops ({grad['ops']} ops, step {grad['step']:g}); "
        f"the largest relative error is {worst['rel_error']:.2g} "
        f"(`{worst['op']}[{worst['case']}]`, input `{worst['input']}`),"
        f" {'below' if grad['passed'] else 'above'} the threshold {grad['threshold']:g}.\n\n"
        f"The course's two circuits, by hand-written backward:\n\n{circuits}\n"
    )
    act, _ = _figure_json("activations")
    rows = [
        "| init | nonlinearity | std after layer 1 | std after the last layer |",
        "| --- | --- | ---: | ---: |",
    ]
    for run in act["runs"]:
        stds = [layer["std"] for layer in run["layers"]]
        rows.append(f"| {run['init']} | {run['nonlinearity']} | {_fmt(stds[0])} | {_fmt(stds[-1])} |")
    tables["activations"] = (
        f"{act['batch']} inputs through {act['depth']} layers of {act['width']} units ({act['ops']} ops).\n\n"
        + "\n".join(rows)
        + "\n"
    )
    opt, _ = _figure_json("optimizers")
    rows = ["| rule | lr | last-epoch loss | train acc | val acc |", "| --- | ---: | ---: | ---: | ---: |"]
    for run in opt["runs"]:
        rows.append(
            f"| {run['rule']} | {_fmt(run['lr'])} | {_fmt(_last_epoch_mean(run['loss'], opt['epochs']))} "
            f"| {_fmt(_last(run['train_acc']))} "
            f"| {_fmt(_last(run['val_acc']))} |"
        )
    keys = ("num_train", "num_val", "epochs", "batch_size", "weight_scale", "hidden_dims", "ops", "seed")
    tables["optimizers"] = _settings(opt, keys) + "\n".join(rows) + "\n"
    drop, _ = _figure_json("dropout")
    rows = ["| keep ratio | train acc | val acc | best val acc |", "| --- | ---: | ---: | ---: |"]
    for run in drop["runs"]:
        best = max(run["val_acc"]) if isinstance(run["val_acc"], list) else run["val_acc"]
        rows.append(
            f"| {run['keep_ratio']} | {_fmt(_last(run['train_acc']))} | {_fmt(_last(run['val_acc']))} "
            f"| {_fmt(best)} |"
        )
    keys = ("num_train", "num_val", "epochs", "batch_size", "lr", "hidden_dims", "ops", "seed")
    tables["dropout"] = _settings(drop, keys) + "\n".join(rows) + "\n"
    init, _ = _figure_json("init_scale")
    rows = ["| net | cells reaching 100% train accuracy | of |", "| --- | ---: | ---: |"]
    for net in init["nets"]:
        grid = [acc for line in net["train_acc"] for acc in (line if isinstance(line, list) else [line])]
        rows.append(
            f"| {len(net['hidden_dims']) + 1} layers {net['hidden_dims']} | {sum(a >= 1.0 for a in grid)} "
            f"| {len(grid)} |"
        )
    keys = ("num_train", "epochs", "batch_size", "ops", "seed")
    tables["init_scale"] = _settings(init, keys) + "\n".join(rows) + "\n"
    bn, _ = _figure_json("batchnorm")
    keys = ("num_train", "num_val", "epochs", "hidden_dims", "ops", "seed")
    tables["batchnorm"] = _settings(bn, keys)
    return tables


def write_measured_tables() -> None:
    _write(GENERATED / "bench.md", bench_markdown())
    _write(GENERATED / "bench_activations_attention.md", bench_markdown(BENCH_MORE_JSON))
    _write(GENERATED / "coverage.md", coverage_markdown())
    _write(GENERATED / "coverage_timm.md", coverage_markdown(COVERAGE_TIMM_JSON))
    for name, text in figure_tables().items():
        _write(GENERATED / f"figures_{name}.md", text)


_SCRAPED: weakref.WeakSet[Any] = weakref.WeakSet()


def figure_scraper(block: Any, block_vars: dict[str, Any], gallery_conf: dict[str, Any]) -> str:
    """A sphinx-gallery image scraper for the figures the project's plotting functions return: plain
    ``matplotlib.figure.Figure`` objects that pyplot does not manage (so the matplotlib scraper does not
    see them). Each such figure held by a variable of the walk-through is saved once, after the code block
    that made it, as a notebook shows a figure that ends a cell. It runs before the matplotlib scraper,
    while pyplot's figures are still open, and leaves those to it."""
    from matplotlib.figure import Figure
    from sphinx_gallery.scrapers import figure_rst

    paths = []
    for value in list(block_vars["example_globals"].values()):
        if not isinstance(value, Figure) or value in _SCRAPED:
            continue
        _SCRAPED.add(value)
        if value.canvas.manager is not None:  # a pyplot figure: the matplotlib scraper (run next) saves it
            continue
        path = next(block_vars["image_path_iterator"])
        value.savefig(path, dpi=100)
        paths.append(path)
    return figure_rst(paths, gallery_conf["src_dir"])


_ROLE = re.compile(r":(?:[\w-]+:)?[\w-]+:`")


def _rst_problems(text: str) -> list[str]:
    """What plain docutils reports (level >= warning) on ``text``, Sphinx roles counted as known."""
    import io

    from docutils import nodes
    from docutils.core import publish_doctree

    stream = io.StringIO()
    settings = {"report_level": 2, "halt_level": 5, "warning_stream": stream}
    doctree = publish_doctree(_ROLE.sub("`", text), settings_overrides=settings)
    return [m.astext() for m in doctree.findall(nodes.system_message) if m["level"] >= 2]


def module_docstring(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Show a module docstring written as plain text (aligned formulas, ASCII tables) as preformatted text.

    Module docstrings in this project are the explanation of a file, often laid out as plain text (the
    forward and backward formulas aligned in columns); one that is not valid reStructuredText is shown as
    written instead of failing the build. Function and class docstrings are always parsed, strictly.
    """
    if what != "module" or not lines or not _rst_problems("\n".join(lines)):
        return
    lines[:] = [".. code-block:: text", ""] + [f"   {line}" if line else "" for line in lines]


def generate(app: Any = None) -> None:
    """Write every generated page (Sphinx's ``builder-inited``)."""
    write_op_pages()
    write_measured_tables()


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", generate)
    app.connect("autodoc-process-docstring", module_docstring)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
