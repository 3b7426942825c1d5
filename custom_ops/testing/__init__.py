"""Test data of the manual operators, as ``torch.testing._internal`` holds torch's OpInfos.

One :class:`OpSpec` per operator (:data:`SPECS`) pairs the runtime facts of :mod:`custom_ops.registry`
with the examples it is checked on: samples where it is differentiable (:data:`OP_CASES`), samples on
its kinks (:data:`KINK_CASES`, parity with the built-in only), the inputs it must refuse, module
configurations of its twins (:data:`MODULE_CASES`) and the name of torch's OpInfo
(:data:`OPINFO_NAMES`); :data:`SANDWICHES` does the same for the sandwich layers. The tests,
``cs231n gradcheck`` and ``cs231n bench`` read it; runtime code (training, ``swap``) never imports it.

Examples::

    >>> from custom_ops.testing import SPECS
    >>> case = SPECS["relu"].kink_cases[0]
    >>> case.id, case.kink
    ('relu[at-0]', True)
    >>> x, = case.inputs(requires_grad=False)
    >>> bool((x == 0).any())
    True
"""

from custom_ops.registry import OP_NAMES

from .ops import KINK_CASES, MODULE_CASES, OP_CASES, OPINFO_NAMES, PARITY_CASES, SPECS
from .sandwiches import SANDWICHES
from .spec import (
    ErrorInput,
    InputFactory,
    ModuleCase,
    OpCase,
    OpSpec,
    Sample,
    arbitrary,
    labels,
    module_cases,
    normal,
    positive,
    randn,
)

__all__ = [
    "KINK_CASES",
    "MODULE_CASES",
    "OPINFO_NAMES",
    "OP_CASES",
    "OP_NAMES",
    "PARITY_CASES",
    "SANDWICHES",
    "SPECS",
    "ErrorInput",
    "InputFactory",
    "ModuleCase",
    "OpCase",
    "OpSpec",
    "Sample",
    "arbitrary",
    "labels",
    "module_cases",
    "normal",
    "positive",
    "randn",
]
