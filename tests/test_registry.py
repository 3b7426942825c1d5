"""The two homes of an op's spec: the runtime facts (:mod:`custom_ops.registry`) and the test data
(:mod:`custom_ops.testing`). Runtime code never imports the test data; the two agree; the kink samples sit
on real kinks."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from custom_ops.registry import OPS, SANDWICH_OPS
from custom_ops.testing import KINK_CASES, MODULE_CASES, PARITY_CASES, SANDWICHES, SPECS, OpCase

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_PACKAGES = ("custom_ops", "torch_cs231n", "lightning_modules")
TESTING = "custom_ops.testing"
TOOLS = {"torch_cs231n.tools.gradcheck", "torch_cs231n.tools.bench"}
"""Tools that run the test samples themselves (``cs231n gradcheck``, ``cs231n bench --tiny``): the CLI
imports them only when they are called."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved, ``from a import b``
    giving both ``a`` and ``a.b``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def runtime_files() -> list[Path]:
    return [
        path
        for package in RUNTIME_PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if not module_name(path).startswith(TESTING) and module_name(path) not in TOOLS
    ]


def test_no_runtime_module_imports_the_test_data() -> None:
    offenders = {
        module_name(path): sorted(
            m for m in imported_modules(path) if m == TESTING or m.startswith(TESTING + ".")
        )
        for path in runtime_files()
    }
    offenders = {name: found for name, found in offenders.items() if found}
    assert not offenders, f"runtime modules import the test data of {TESTING}: {offenders}"


def test_the_cli_and_the_runtime_load_no_test_data() -> None:
    """What training runs (the CLI, the ops, the module twins, swap) leaves custom_ops.testing unloaded:
    the tools that use it are imported only when called."""
    code = (
        "import sys\n"
        "import custom_ops.functional, custom_ops.nn, custom_ops.registry, custom_ops.layer_utils\n"
        "import torch_cs231n.interop.swap, torch_cs231n.nets.models, torch_cs231n.tools.summary\n"
        "import lightning_modules.cli\n"
        f"loaded = sorted(m for m in sys.modules if m.startswith({TESTING!r}))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"importing the runtime loaded the test data:\n{result.stderr[-2000:]}"


def test_the_test_data_is_torch_only() -> None:
    """custom_ops.testing, like custom_ops, depends on torch and the standard library only."""
    allowed = ("torch", "custom_ops", "__future__", *sys.stdlib_module_names)
    for path in sorted((ROOT / "custom_ops" / "testing").glob("*.py")):
        outside = sorted(m for m in imported_modules(path) if m.split(".")[0] not in allowed)
        assert not outside, f"{module_name(path)} imports {outside}: custom_ops.testing is torch-only"


def test_specs_and_facts_list_the_same_ops() -> None:
    assert list(SPECS) == list(OPS), "custom_ops.testing.SPECS and custom_ops.registry.OPS list other ops"
    assert list(SANDWICHES) == list(SANDWICH_OPS), "SANDWICHES and SANDWICH_OPS list other layers"
    for name, spec in {**SPECS, **SANDWICHES}.items():
        assert spec.facts is {**OPS, **SANDWICH_OPS}[name], f"the spec of {name} holds other facts"


@pytest.mark.parametrize("name", list(OPS))
def test_module_configurations_cover_exactly_the_module_twins(name: str) -> None:
    """The module twins swap.to_manual reads (runtime) are the ones the module tests run (test data)."""
    tested = {(case.manual, case.builtin) for case in SPECS[name].modules}
    assert tested == set(OPS[name].modules), (
        f"{name}: module twins {OPS[name].modules}, configurations tested for {sorted(map(str, tested))}"
    )
    assert {(c.manual, c.builtin) for c in MODULE_CASES} >= tested


def test_every_op_with_a_kink_has_kink_samples() -> None:
    kinked = {"relu", "relu6", "hardsigmoid", "hardswish", "max_pool2d", "adaptive_max_pool2d", "svm_loss"}
    kinked |= {"leaky_relu", "prelu", "hardtanh", "elu", "selu"}  # celu is C^1 at 0
    kinked |= {"softplus", "normalize"}  # softplus's threshold (a jump for small ones), normalize's floor eps
    assert {case.op for case in KINK_CASES} == kinked, "kink samples: " + ", ".join(c.id for c in KINK_CASES)
    assert all(case.kink for case in KINK_CASES) and not any(
        case.kink for spec in SPECS.values() for case in spec.cases
    )
    parity = {case.id for case in PARITY_CASES}
    assert parity >= {case.id for case in KINK_CASES}, "the parity test must run on the kink samples"


SANDWICH_KINK_CASES = tuple(case for spec in SANDWICHES.values() for case in spec.kink_cases)


def test_the_relu_sandwiches_without_a_norm_have_kink_samples() -> None:
    """A batch or layer norm before the ReLU gives no exact 0 to sit on; the others have kink samples."""
    have = {case.op for case in SANDWICH_KINK_CASES}
    assert have == {"affine_relu", "conv_relu", "conv_relu_pool"}, f"sandwich kink samples: {sorted(have)}"


@pytest.mark.parametrize(
    "case", KINK_CASES + SANDWICH_KINK_CASES, ids=[c.id for c in KINK_CASES + SANDWICH_KINK_CASES]
)
def test_kink_samples_sit_on_kinks(case: OpCase) -> None:
    """On a kink, finite differences disagree with the built-in's own gradient: why gradchecks skip these
    samples (and a sample that missed its kink would fail here)."""
    args = case.inputs(torch.float64)

    def builtin(*grad_tensors: torch.Tensor) -> torch.Tensor:
        full = list(args)
        for i, t in zip(case.grad_inputs, grad_tensors):
            full[i] = t
        return case.builtin(*full)

    inputs = tuple(args[i] for i in case.grad_inputs)
    agrees = torch.autograd.gradcheck(builtin, inputs, raise_exception=False)
    assert not agrees, f"{case.id}: finite differences agree with the built-in, so the sample is no kink"
