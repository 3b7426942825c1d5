"""The CS231n numeric gradient check, as a learner reads it: one row per op and differentiable input.

For every case of :data:`custom_ops.testing.OP_CASES` and every differentiable input ``x`` of it, the
gradient of ``f = sum(op(*inputs) * dout)`` (``dout`` a fixed random upstream gradient) is computed twice
in float64:

* **analytic**: by the op's backward (``torch.autograd.grad``), which for the manual ops is the
  hand-written backward of its ``autograd.Function``;
* **numeric**: by centred finite differences, one element at a time, as CS231n's
  ``eval_numerical_gradient_array`` does: ``(f(x + h e_i) - f(x - h e_i)) / (2 h)`` with ``h = 1e-6``.

The row's relative error is ``max|a - n| / max(|a| + |n|)`` over the elements; CS231n's rule of thumb is
that a correct backward gives well below ``1e-7`` in float64. The registry chooses inputs where finite
differences are valid (away from ReLU kinks and max-pool ties; the kink samples of
:data:`custom_ops.testing.KINK_CASES` are left out); dropout draws the same mask on every call because
the global RNG is re-seeded before each one.

The **forward mode** column checks the op's forward-mode derivative (its ``jvp``) the same way:
``torch.autograd.gradcheck(..., check_forward_ad=True, check_backward_ad=False)`` against finite
differences, in gradcheck's fast mode (a random projection of the Jacobian), for the same input.

Also here, the two circuits the lecture works out by hand, each with its gradients three ways (a tiny
forward/backward of gates written out, autograd, and finite differences): :func:`add_multiply_circuit` and
:func:`reciprocal_circuit`.

``cs231n gradcheck [--ops manual|builtin] [--out DIR] [--json PATH]`` prints the table and the circuits
and exits with status 0 exactly when every row is below the threshold and passes the forward-mode check.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from matplotlib.figure import Figure

from custom_ops.registry import OP_NAMES
from custom_ops.testing import OP_CASES, OpCase

from .command import add_output_arguments, report_stream, write_outputs

THRESHOLD = 1e-7
"""A row passes when its relative error is below this (CS231n: "< 1e-7 and you're probably happy")."""

STEP = 1e-6
"""Finite-difference step ``h``."""

DOUT_SEED = 10_000
"""The upstream gradient is drawn from a generator seeded with ``DOUT_SEED + seed``: apart from the seeds
the registry draws its inputs from (an upstream gradient equal to a batch-norm input ``x`` makes the
gradient with respect to ``x`` vanish, and the check meaningless)."""


@dataclass(frozen=True)
class GradRow:
    """One differentiable input of one registry case.

    Attributes:
        op: operator name.
        case: the registry case label, e.g. ``"stride2-pad1"``.
        input: the argument's name in :mod:`custom_ops.functional` (``input``, ``weight``, ``bias``, ...).
        shape: its shape.
        rel_error: ``max|a - n| / max(|a| + |n|)`` of analytic ``a`` and numeric ``n`` gradients (0 when
            both are zero).
        grad_scale: ``max|a|``. Where it is tiny (a saturated softmax, a normalisation over two values)
            the numeric gradient is mostly rounding noise and ``rel_error`` says little about the backward.
        forward_error: why the forward-mode check of this input failed (the error's type and first
            line, e.g. that the Function has no ``jvp``); empty when it passed.
    """

    op: str
    case: str
    input: str
    shape: tuple[int, ...]
    rel_error: float
    grad_scale: float
    forward_error: str = ""

    @property
    def passed(self) -> bool:
        """The backward's relative error is below :data:`THRESHOLD`."""
        return self.rel_error < THRESHOLD

    @property
    def forward_passed(self) -> bool:
        """The forward-mode derivative agrees with finite differences."""
        return not self.forward_error


def rel_error(analytic: torch.Tensor, numeric: torch.Tensor) -> float:
    """``max|a - n| / max(|a| + |n|)``; 0 when both are all zeros.

    Examples::

        >>> rel_error(torch.tensor([2.0, -1.0]), torch.tensor([2.0, -1.5]))  # 0.5 / 4
        0.125
    """
    scale = (analytic.abs() + numeric.abs()).max().item()
    if scale == 0.0:
        return 0.0
    return (analytic - numeric).abs().max().item() / scale


def numeric_gradient(f: Callable[[], float], x: torch.Tensor, h: float = STEP) -> torch.Tensor:
    """Centred finite differences of the scalar ``f()`` with respect to every element of ``x``.

    ``x`` is perturbed in place, one element at a time (``x[i] += h``, ``f()``, ``x[i] -= 2h``, ``f()``,
    restore), so ``f`` must read ``x`` when called.

    Args:
        f: a function of the current value of ``x`` returning a Python float.
        x: a contiguous tensor that does not require grad.
        h: the step.

    Returns:
        ``df/dx``, shaped like ``x``.

    Examples::

        >>> x = torch.tensor([3.0, -1.0], dtype=torch.float64)
        >>> numeric_gradient(lambda: float((x**2).sum()), x).tolist()  # 2x
        [6.000000000838668, -2.000000000279556]
    """
    flat = x.view(-1)
    grad = torch.empty_like(flat)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + h
        plus = f()
        flat[i] = old - h
        minus = f()
        flat[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad.view_as(x)


def _input_name(case: OpCase, position: int) -> str:
    """Name of the argument at ``position`` of ``case.manual`` (the op's, as :mod:`torch.nn.functional`
    names it: ``input``, ``weight``, ``bias``); ``arg{position}`` when the callable does not name it."""
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    try:
        parameters = inspect.signature(case.manual).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature, e.g. `SomeFunction.apply`
        parameters = []
    names = [p.name for p in parameters if p.kind in kinds]
    return names[position] if position < len(names) else f"arg{position}"


def check_case(case: OpCase, ops: str = "manual", seed: int = 0, h: float = STEP) -> list[GradRow]:
    """The rows of one registry case: one per differentiable input, in float64 on CPU.

    Args:
        case: a registry case.
        ops: ``"manual"`` (the hand-written backward) or ``"builtin"`` (its ``torch`` twin's).
        seed: seed of the upstream gradient (:data:`DOUT_SEED` ``+ seed``), and of the global RNG before
            each call of a random op.
        h: finite-difference step.

    Returns:
        A :class:`GradRow` per position of ``case.grad_inputs`` that holds a tensor.
    """
    fn = {"manual": case.manual, "builtin": case.builtin}[ops]
    args = case.inputs(torch.float64)
    positions = [i for i in case.grad_inputs if isinstance(args[i], torch.Tensor)]

    def call(values: Sequence[Any]) -> torch.Tensor:
        if case.random:
            torch.manual_seed(seed)
        return fn(*values)

    with torch.random.fork_rng():
        out = call(args)
        generator = torch.Generator().manual_seed(DOUT_SEED + seed)
        dout = torch.randn(out.shape, generator=generator, dtype=out.dtype)
        analytic = torch.autograd.grad(out, [args[i] for i in positions], dout)
        values = [a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args]
        rows = []
        for i, grad in zip(positions, analytic):
            with torch.no_grad():
                numeric = numeric_gradient(lambda: float((call(values) * dout).sum()), values[i], h)
            error = rel_error(grad, numeric)
            forward = forward_mode_error(lambda x, i=i: call([*values[:i], x, *values[i + 1 :]]), values[i])
            name = _input_name(case, i)
            scale = grad.abs().max().item()
            rows.append(GradRow(case.op, case.label, name, tuple(values[i].shape), error, scale, forward))
    return rows


def forward_mode_error(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> str:
    """Check the forward-mode derivative of ``f`` at ``x`` (float64) against finite differences, with
    ``torch.autograd.gradcheck(check_forward_ad=True, check_backward_ad=False, fast_mode=True)``.

    Returns:
        ``""`` when it agrees; else the error's type and the first line of its message.

    Examples::

        >>> forward_mode_error(torch.sin, torch.tensor([0.5, 2.0], dtype=torch.float64))
        ''
    """
    x = x.detach().clone().requires_grad_(True)
    try:
        torch.autograd.gradcheck(
            f,
            (x,),
            check_forward_ad=True,
            check_backward_ad=False,
            check_undefined_grad=False,
            fast_mode=True,
        )
    except Exception as err:  # a missing jvp is a RuntimeError, a wrong one a GradcheckError: report both
        return f"{type(err).__name__}: {str(err).strip().splitlines()[0]}"
    return ""


def gradcheck_table(
    ops: str = "manual", cases: Iterable[OpCase] = OP_CASES, seed: int = 0, h: float = STEP
) -> list[GradRow]:
    """:func:`check_case` over ``cases`` (default: the whole registry), rows in registry order.

    Examples::

        >>> from custom_ops.testing import SPECS
        >>> rows = gradcheck_table("builtin", cases=SPECS["linear"].cases[:1])
        >>> [(r.input, r.passed, r.forward_passed) for r in rows]
        [('input', True, True), ('weight', True, True), ('bias', True, True)]
    """
    return [row for case in cases for row in check_case(case, ops, seed, h)]


def format_table(rows: Sequence[GradRow]) -> str:
    """The rows as an aligned text table (``ok``, or ``FAIL`` where a row is not below :data:`THRESHOLD`;
    the forward-mode check's ``ok`` or ``FAIL``), a line with the maximum and the count of failures, and
    each distinct reason the forward-mode check failed."""
    header = ("op", "case", "input", "shape", "rel error", "max|grad|", "backward", "forward mode")
    shapes = ["x".join(map(str, r.shape)) or "scalar" for r in rows]
    body = [
        (
            r.op,
            r.case,
            r.input,
            shape,
            f"{r.rel_error:.2e}",
            f"{r.grad_scale:.1e}",
            "ok" if r.passed else "FAIL",
            "ok" if r.forward_passed else "FAIL",
        )
        for r, shape in zip(rows, shapes)
    ]
    widths = [max(len(line[k]) for line in [header, *body]) for k in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in [header, *body]]
    worst = max(rows, key=lambda r: r.rel_error)
    failed = sum(not r.passed for r in rows)
    forward_failed = [r for r in rows if not r.forward_passed]
    lines.append(
        f"{len(rows)} rows, max rel error {worst.rel_error:.2e} ({worst.op}[{worst.case}] {worst.input}); "
        f"{failed} at or above {THRESHOLD:.0e}; {len(forward_failed)} fail the forward-mode check"
    )
    reasons: dict[str, list[str]] = {}
    for r in forward_failed:
        reasons.setdefault(r.forward_error, [])
        if r.op not in reasons[r.forward_error]:
            reasons[r.forward_error].append(r.op)
    lines += [f"forward mode: {reason} ({', '.join(ops)})" for reason, ops in reasons.items()]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ the lecture's circuits
@dataclass(frozen=True)
class Circuit:
    """A hand-worked circuit: its inputs, its value, and ``df/d(input)`` computed three ways.

    Attributes:
        name: short name.
        formula: ``f`` as written in the lecture.
        inputs: input name -> value.
        value: ``f`` at ``inputs``.
        backward: the gradients of the gate-by-gate backward pass written out by hand.
        autograd: the gradients ``torch.autograd`` computes (float64).
        numeric: centred finite differences (float64).
    """

    name: str
    formula: str
    inputs: dict[str, float]
    value: float
    backward: dict[str, float]
    autograd: dict[str, float]
    numeric: dict[str, float]


def _autograd_and_numeric(
    f: Callable[..., torch.Tensor], inputs: dict[str, float], h: float = STEP
) -> tuple[dict[str, float], dict[str, float]]:
    tensors = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in inputs.items()}
    grads = torch.autograd.grad(f(**tensors), list(tensors.values()))
    autograd = {k: g.item() for k, g in zip(tensors, grads)}
    values = {k: t.detach().clone() for k, t in tensors.items()}
    numeric = {k: numeric_gradient(lambda: float(f(**values)), values[k], h).item() for k in values}
    return autograd, numeric


def add_multiply_circuit(x: float = -2.0, y: float = 5.0, z: float = -4.0) -> Circuit:
    """``f = (x + y) z``: an add gate, then a multiply gate.

    Forward ``q = x + y``, ``f = q z``; backward ``df/dz = q``, ``df/dq = z``, and the add gate hands
    ``df/dq`` unchanged to both of its inputs: ``df/dx = df/dy = z``.

    Examples::

        >>> c = add_multiply_circuit()
        >>> c.value, c.backward
        (-12.0, {'x': -4.0, 'y': -4.0, 'z': 3.0})
    """
    # forward pass
    q = x + y
    f = q * z
    # backward pass, gate by gate, from df/df = 1
    dz = q * 1.0  # multiply gate: each input gets the other input times the upstream gradient
    dq = z * 1.0
    dx = 1.0 * dq  # add gate: distributes the upstream gradient
    dy = 1.0 * dq
    inputs = {"x": x, "y": y, "z": z}
    autograd, numeric = _autograd_and_numeric(lambda x, y, z: (x + y) * z, inputs)
    return Circuit("add-multiply", "f = (x + y) z", inputs, f, {"x": dx, "y": dy, "z": dz}, autograd, numeric)


def reciprocal_circuit(
    w0: float = 1.0, x0: float = 3.0, w1: float = 2.0, x1: float = -2.0, w2: float = -1.0
) -> Circuit:
    """``f = 1 / ((w0 x0 + w1 x1 + w2) + 1)``: two multiply gates, add gates, ``+1``, ``1/t``.

    Forward ``s = w0 x0 + w1 x1 + w2``, ``t = s + 1``, ``f = 1 / t``; backward ``df/dt = -1 / t^2``,
    ``df/ds = df/dt`` (the ``+1`` gate), which the add gates hand to ``w0 x0``, ``w1 x1`` and ``w2``; the
    multiply gates swap their inputs: ``df/dw0 = x0 df/ds``, ``df/dx0 = w0 df/ds``, and so on.

    Examples::

        >>> c = reciprocal_circuit()
        >>> c.value, c.backward
        (-1.0, {'w0': -3.0, 'x0': -1.0, 'w1': 2.0, 'x1': -2.0, 'w2': -1.0})
    """
    # forward pass
    a = w0 * x0
    b = w1 * x1
    s = a + b + w2
    t = s + 1.0
    f = 1.0 / t
    # backward pass
    dt = -1.0 / t**2  # d(1/t)/dt
    ds = 1.0 * dt  # +1 gate
    da, db, dw2 = ds, ds, ds  # add gates
    dw0, dx0 = x0 * da, w0 * da  # multiply gates
    dw1, dx1 = x1 * db, w1 * db
    inputs = {"w0": w0, "x0": x0, "w1": w1, "x1": x1, "w2": w2}
    autograd, numeric = _autograd_and_numeric(
        lambda w0, x0, w1, x1, w2: 1.0 / ((w0 * x0 + w1 * x1 + w2) + 1.0), inputs
    )
    backward = {"w0": dw0, "x0": dx0, "w1": dw1, "x1": dx1, "w2": dw2}
    return Circuit("reciprocal", "f = 1 / ((w0 x0 + w1 x1 + w2) + 1)", inputs, f, backward, autograd, numeric)


def format_circuit(circuit: Circuit) -> str:
    """The circuit's value and a line per input: by hand (backward), autograd, numeric."""
    inputs = ", ".join(f"{k}={v:g}" for k, v in circuit.inputs.items())
    lines = [
        f"{circuit.formula} at {inputs}: f = {circuit.value:g}",
        "  df/d   backward   autograd   numeric",
    ]
    for k in circuit.inputs:
        lines.append(
            f"  {k:<5} {circuit.backward[k]:>9.4g} {circuit.autograd[k]:>10.4g} {circuit.numeric[k]:>9.4g}"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ figure
def error_figure(rows: Sequence[GradRow], title: str) -> Figure:
    """Relative error of every row (log scale), grouped by op, with the 1e-7 threshold line; a row at or
    above it is labelled with its case, input and gradient scale.

    Returns:
        The figure: one horizontal axis position per op, one dot per row.
    """
    op_names = list(dict.fromkeys(r.op for r in rows))
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    ax = fig.subplots()
    for k, op in enumerate(op_names):
        these = [r for r in rows if r.op == op]
        xs = [k + j for j in torch.linspace(-0.25, 0.25, len(these)).tolist()] if len(these) > 1 else [k]
        ys = [max(r.rel_error, 1e-18) for r in these]
        ax.plot(xs, ys, "o", markersize=4, alpha=0.7)
        for x, y, row in zip(xs, ys, these):
            if not row.passed:
                text = f"{row.case} {row.input}\nmax|grad| {row.grad_scale:.0e}"
                ax.annotate(
                    text,
                    (x, y),
                    xytext=(-8, 0),
                    textcoords="offset points",
                    ha="right",
                    va="center",
                    fontsize=7,
                )
    ax.axhline(THRESHOLD, color="tab:red", linestyle="--", label=f"threshold {THRESHOLD:.0e}")
    ax.set_yscale("log")
    ax.set_ylim(top=30 * max(THRESHOLD, *(r.rel_error for r in rows)))  # room for the labels
    ax.set_xticks(range(len(op_names)), op_names, rotation=40, ha="right")
    ax.set(title=title, ylabel="relative error  max|a-n| / max(|a|+|n|)")
    ax.legend(loc="upper left")
    return fig


def to_json(rows: Sequence[GradRow], circuits: Sequence[Circuit], ops: str) -> dict[str, Any]:
    """The numbers behind the table and the figure."""
    return {
        "ops": ops,
        "threshold": THRESHOLD,
        "step": STEP,
        "max_rel_error": max(r.rel_error for r in rows),
        "forward_failures": sum(not r.forward_passed for r in rows),
        "passed": all(r.passed and r.forward_passed for r in rows),
        "rows": [
            {**asdict(r), "shape": list(r.shape), "passed": r.passed, "forward_passed": r.forward_passed}
            for r in rows
        ],
        "circuits": [asdict(c) for c in circuits],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``cs231n gradcheck``: print the table and the circuits; 0 when every row is below the threshold."""
    parser = argparse.ArgumentParser(
        prog="cs231n gradcheck",
        description="Numeric gradient check (float64, centred differences) of every registry op and "
        "differentiable input, backward and forward mode; exit status 0 when every relative error is "
        f"below {THRESHOLD:.0e} and every forward-mode check passes.",
    )
    parser.add_argument(
        "--ops",
        choices=("manual", "builtin"),
        default="manual",
        help="whose backward to check (default: manual, the hand-written ones)",
    )
    parser.add_argument(
        "--op",
        nargs="+",
        choices=OP_NAMES,
        default=None,
        metavar="OP",
        help=f"only these ops: {', '.join(OP_NAMES)}",
    )
    add_output_arguments(parser, "gradcheck", "gradcheck.png")
    parser.add_argument("--seed", type=int, default=0, help="seed of the upstream gradients (default 0)")
    args = parser.parse_args(argv)
    cases = [c for c in OP_CASES if args.op is None or c.op in args.op]
    rows = gradcheck_table(args.ops, cases, args.seed)
    circuits = [add_multiply_circuit(), reciprocal_circuit()]
    out = report_stream(args)
    print(format_table(rows), file=out)
    for circuit in circuits:
        print(file=out)
        print(format_circuit(circuit), file=out)
    payload = to_json(rows, circuits, args.ops)
    title = f"Numeric gradient check of the {args.ops} backward passes (float64)"
    write_outputs(args, "gradcheck", payload, {"gradcheck.png": lambda: error_figure(rows, title)}, indent=1)
    return 0 if payload["passed"] else 1
