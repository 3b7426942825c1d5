"""Matrix products: :func:`matmul` (``torch.matmul``, ``@``) and :func:`einsum` (``torch.einsum``), the
attention scores ``Q Kᵀ`` and the weighted values ``P V`` that Swin and MaxViT compute in their own
``forward``.

The reference, as the course writes the backward of a product (a dot marks the forward-mode tangent):

    C    = A B                 (…, n, k) @ (…, k, p) -> (…, n, p), the leading (batch) dims broadcast
    dA   = dC Bᵀ               (…, n, p) @ (…, p, k), then summed over the batch dims A was broadcast along
    dB   = Aᵀ dC               (…, k, n) @ (…, n, p), likewise summed to B's shape
    Ċ    = Ȧ B + A Ḃ           the product rule (C is linear in each factor)

A 1-D factor is a vector: on the left ``(k,)`` is the row ``(1, k)``, on the right the column ``(k, 1)``;
the dim added for it is dropped from C, and from its gradient (``dA`` of a vector ``a`` is ``dC Bᵀ`` as a
row, i.e. ``B dC`` for a matrix B).

An einsum is a sum of products over the indices missing from the output. Its gradient with respect to
operand k is the same kind of sum: the einsum of ``dOut`` with the *other* operands into operand k's
subscripts (every product that held ``A_k[i…]`` contributes ``dOut[…] ·`` the other factors to it):

    out[o] = Σ_{s ∉ o} Π_j A_j[s_j]
    dA_k   = einsum(dOut, A_j for j ≠ k -> s_k)
    Ȯut    = Σ_k einsum(A_1, …, Ȧ_k, …, A_n -> o)

Three cases need more than that one einsum: an index only operand k has (summed away in the forward:
every ``dA_k`` along it is the same, so the gradient is expanded along it); a size-1 dim broadcast against
a larger one (the gradient summed over it, keeping the dim); an index repeated within operand k (a
diagonal or a trace, ``"ii->"``): the gradient lives on the diagonal only, so the repeat is given a fresh
index tied to the first by an identity matrix, ``dA[i, i'] = g[i] δ(i, i')``.

The forward runs the built-in product (there is no faster way to multiply matrices by hand); the
backward and the forward-mode derivative are the formulas above, made of matrix products and einsums
themselves, so double backward and forward-over-reverse work, and ``torch.func.vmap`` batches them.
"""

from __future__ import annotations

import functools
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from . import _autocast
from ._checks import OpArgumentError, check_floating, check_same_dtype
from ._function import fast_apply, without_jvp
from ._transforms import legacy_vmap_active


# ------------------------------------------------------------------------------------------- matmul
def _as_matrices(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A vector on the left as the row ``(1, k)``, on the right as the column ``(k, 1)``."""
    a2 = a.unsqueeze(0) if a.dim() == 1 else a
    b2 = b.unsqueeze(-1) if b.dim() == 1 else b
    return a2, b2


def matmul_forward(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``C = A B``, the batch dims broadcast; a vector's added dim dropped from C."""
    a2, b2 = _as_matrices(a, b)
    out = torch.matmul(a2, b2)  # (…, n, p)
    if b.dim() == 1:
        out = out.squeeze(-1)
    if a.dim() == 1:
        out = out.squeeze(-2 if b.dim() > 1 else -1)
    return out


def matmul_backward(
    dout: torch.Tensor, a: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``dA = dC Bᵀ``, ``dB = Aᵀ dC``, each summed to its factor's shape over the broadcast batch dims."""
    a2, b2 = _as_matrices(a, b)
    dout2 = dout.unsqueeze(-1) if b.dim() == 1 else dout  # back to (…, n, p)
    dout2 = dout2.unsqueeze(-2) if a.dim() == 1 else dout2
    da = torch.matmul(dout2, b2.mT)  # (…, n, k), the broadcast batch shape
    db = torch.matmul(a2.mT, dout2)  # (…, k, p)
    da = da.sum_to_size(a2.shape)  # summed over the batch dims A was broadcast along
    db = db.sum_to_size(b2.shape)
    da = da.squeeze(0) if a.dim() == 1 else da
    db = db.squeeze(-1) if b.dim() == 1 else db
    return da, db


def matmul_jvp(
    a_dot: torch.Tensor | None, b_dot: torch.Tensor | None, a: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """``Ċ = Ȧ B + A Ḃ``, the terms of the factors that have a tangent (None: no tangent)."""
    terms = []
    if a_dot is not None:
        terms.append(matmul_forward(a_dot, b))
    if b_dot is not None:
        terms.append(matmul_forward(a, b_dot))
    if not terms:
        return torch.zeros_like(matmul_forward(a, b))
    out_dot = terms[0] if len(terms) == 1 else terms[0] + terms[1]
    return out_dot


@fast_apply
class MatmulFunction(torch.autograd.Function):
    """``A B`` with torch.matmul's shapes (1-D, 2-D, batched with broadcasting).

    Backward ``dA = dC Bᵀ``, ``dB = Aᵀ dC`` (summed over broadcast dims); jvp ``Ċ = Ȧ B + A Ḃ``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        out = matmul_forward(a, b)
        # A vector's dim is dropped by a view of the product; a Function must return a new tensor (autograd
        # forbids its views being modified in place, e.g. by a following ReLU(inplace=True)): a copy, of
        # the product's size (the vector cases only).
        return out.clone() if a.dim() == 1 or b.dim() == 1 else out

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, torch.Tensor], output: torch.Tensor) -> None:
        a, b = inputs
        ctx.save_for_backward(a, b)
        ctx.save_for_forward(a, b)

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        da, db = matmul_backward(dout, a, b)
        return (da if need_a else None), (db if need_b else None)

    @staticmethod
    def jvp(ctx: Any, a_dot: torch.Tensor | None, b_dot: torch.Tensor | None) -> torch.Tensor:
        a, b = ctx.saved_tensors
        return matmul_jvp(a_dot, b_dot, a, b)


_MatmulFunctionTraced = without_jvp(MatmulFunction)  # what torch.compile traces


def check_matmul_arguments(input: torch.Tensor, other: torch.Tensor) -> None:
    """The argument checks of :func:`matmul`, with torch's exception types (``RuntimeError`` for shapes)."""
    check_floating("input", input)
    check_floating("other", other)
    check_same_dtype(input, other=other)
    if input.dim() == 0 or other.dim() == 0:
        raise OpArgumentError(
            f"both arguments to matmul must be at least 1-D, got input {tuple(input.shape)} and other "
            f"{tuple(other.shape)}"
        )
    k_input = input.shape[-1]
    k_other = other.shape[0] if other.dim() == 1 else other.shape[-2]
    if k_input != k_other:
        raise OpArgumentError(
            f"matmul: input {tuple(input.shape)} and other {tuple(other.shape)} cannot be multiplied: "
            f"input's last dim ({k_input}) must equal other's "
            f"{'only' if other.dim() == 1 else 'second-to-last'} dim ({k_other})"
        )
    batch_input = input.shape[:-2]
    batch_other = other.shape[:-2]
    try:
        torch.broadcast_shapes(batch_input, batch_other)
    except RuntimeError:
        raise OpArgumentError(
            f"matmul: the batch dims of input {tuple(input.shape)} and other {tuple(other.shape)} do not "
            f"broadcast ({tuple(batch_input)} against {tuple(batch_other)})"
        ) from None


def matmul(input: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Manual twin of :func:`torch.matmul` (the ``@`` operator).

    Args:
        input: floating tensor, at least 1-D: a vector ``(k,)``, a matrix ``(n, k)`` or a batch of matrices
            ``(*, n, k)``.
        other: a tensor of the same dtype: ``(k,)``, ``(k, p)`` or ``(*, k, p)``.

    Shape:
        - Output: the batch dims of both broadcast, then ``(n, p)``; a vector's dim is dropped (vector @
          vector is a 0-d tensor, matrix @ vector ``(*, n)``).
        - Gradients: ``dinput`` the shape of ``input``, ``dother`` the shape of ``other`` (summed over the
          dims they were broadcast along).

    Returns:
        The matrix product.

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> MF.matmul(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([1.0, -1.0]))
        tensor([-1., -1.])
        >>> a = torch.randn(2, 1, 3, 4, dtype=torch.double, requires_grad=True)
        >>> b = torch.randn(5, 4, 2, dtype=torch.double, requires_grad=True)
        >>> MF.matmul(a, b).shape
        torch.Size([2, 5, 3, 2])
        >>> torch.autograd.gradcheck(MF.matmul, (a, b), check_forward_ad=True)
        True
    """
    check_matmul_arguments(input, other)
    function = _MatmulFunctionTraced if torch.compiler.is_compiling() else MatmulFunction
    return _autocast.apply(function, "lower", input, other)


# ------------------------------------------------------------------------------------------- einsum
_LABELS = frozenset(string.ascii_letters)


def _fresh_labels(used: set[str], count: int) -> list[str]:
    """``count`` letters not in ``used`` (einsum takes 52 letters: ``a-z``, ``A-Z``)."""
    free = [c for c in string.ascii_letters if c not in used]
    if len(free) < count:
        raise OpArgumentError(
            f"einsum: the equation needs {count} more subscript letters than the 52 (a-z, A-Z) allow"
        )
    return free[:count]


def parse_equation(equation: str, shapes: Sequence[torch.Size]) -> tuple[tuple[str, ...], str]:
    """The subscripts of each operand and of the output, ellipses written out as letters and the implicit
    output (no ``->``: the ellipsis dims, then the letters met once, in alphabetical order) made explicit.

    An ellipsis covers the dims an operand has beyond its letters; the ellipses of all operands broadcast,
    right-aligned, so an operand with fewer of them gets the last letters.

    Examples::

        >>> parse_equation("b...ij, jk", [torch.Size([2, 5, 3, 4]), torch.Size([4, 6])])  # ... is now 'a'
        (('baij', 'jk'), 'abik')
    """
    if not isinstance(equation, str):
        raise TypeError(f"einsum: equation must be a str, got {type(equation).__name__}")
    return _parse(equation, tuple(len(shape) for shape in shapes))


@functools.lru_cache(maxsize=1024)
def _parse(equation: str, ndims: tuple[int, ...]) -> tuple[tuple[str, ...], str]:
    """:func:`parse_equation` for operands of ``ndims`` dims (a model calls the same few equations: each is
    parsed once)."""
    text = "".join(equation.split())
    lhs, arrow, rhs = text.partition("->")
    groups = lhs.split(",")
    if len(groups) != len(ndims):
        more = "fewer" if len(ndims) < len(groups) else "more"
        raise OpArgumentError(
            f"einsum: {more} operands were given ({len(ndims)}) than the equation {equation!r} has "
            f"subscripts ({len(groups)})"
        )
    for part in (*groups, rhs):
        bad = set(part.replace("...", "")) - _LABELS
        if bad:
            raise OpArgumentError(
                f"einsum: invalid subscript {sorted(bad)[0]!r} in {equation!r}: subscripts are letters "
                "(a-z, A-Z) and '...'"
            )
        if part.count("...") > 1:
            raise OpArgumentError(f"einsum: more than one ellipsis in a subscript of {equation!r}")
    ellipsis_dims = []
    for index, (group, ndim) in enumerate(zip(groups, ndims)):
        letters = len(group.replace("...", ""))
        if "..." in group and ndim >= letters:
            ellipsis_dims.append(ndim - letters)
        elif "..." not in group and ndim == letters:
            ellipsis_dims.append(0)
        else:
            raise OpArgumentError(
                f"einsum: subscripts {group!r} of operand {index} do not match its {ndim} dims"
            )
    ellipsis = _fresh_labels(set(text), max(ellipsis_dims, default=0))
    subscripts = tuple(  # an operand with n ellipsis dims takes the last n letters (right-aligned)
        group.replace("...", "".join(ellipsis[len(ellipsis) - n :]))
        for group, n in zip(groups, ellipsis_dims)
    )
    if arrow:
        output = rhs.replace("...", "".join(ellipsis))
        counts = Counter(output)
        repeated = [c for c, n in counts.items() if n > 1]
        if repeated:
            raise OpArgumentError(f"einsum: output subscript {repeated[0]!r} appears more than once")
        missing = [c for c in output if not any(c in s for s in subscripts)]
        if missing:
            raise OpArgumentError(
                f"einsum: output subscript {missing[0]!r} is not a subscript of any operand"
            )
    else:
        counts = Counter("".join(groups).replace("...", ""))
        output = "".join(ellipsis) + "".join(sorted(c for c, n in counts.items() if n == 1))
    return subscripts, output


def check_einsum_sizes(subscripts: Sequence[str], operands: Sequence[torch.Tensor]) -> None:
    """Every letter has one size, or size 1 where it broadcasts; else torch's ``RuntimeError``."""
    sizes: dict[str, tuple[int, int]] = {}
    for index, (subs, operand) in enumerate(zip(subscripts, operands)):
        for letter, size in zip(subs, operand.shape):
            seen = sizes.get(letter)
            if seen is None or seen[0] == 1:
                sizes[letter] = (size, index)
            elif size not in (1, seen[0]):
                raise OpArgumentError(
                    f"einsum: subscript {letter!r} has size {size} in operand {index} (shape "
                    f"{tuple(operand.shape)}), which does not broadcast with size {seen[0]} in operand "
                    f"{seen[1]}"
                )


def _canonical(subscripts: Sequence[str], output: str) -> str:
    return ",".join(subscripts) + "->" + output


def einsum_forward(subscripts: Sequence[str], output: str, operands: Sequence[torch.Tensor]) -> torch.Tensor:
    """``out[o] = Σ_{s ∉ o} Π_j A_j[s_j]``."""
    out = torch.einsum(_canonical(subscripts, output), *operands)
    return out


def einsum_by_broadcast(
    subscripts: Sequence[str], output: str, operands: Sequence[torch.Tensor]
) -> torch.Tensor:
    """The same sum of products written with broadcasting: each operand's repeated letters reduced to their
    diagonal, its dims laid out along all the equation's letters (size 1 where it has none), the product
    taken, the letters missing from the output summed. Memory: the full product of every letter's size, so
    it runs only under gradcheck's legacy vmap (its batched-gradient check), which cannot batch
    ``torch.einsum`` (its batched-gradient and batched forward-gradient checks)."""
    letters = list(output) + sorted({c for subs in subscripts for c in subs} - set(output))
    product = None
    for subs, operand in zip(subscripts, operands):
        subs = list(subs)
        for letter in [c for c in dict.fromkeys(subs) if subs.count(c) > 1]:
            while subs.count(letter) > 1:  # A[…i…i…] -> its diagonal, i moved last
                first = subs.index(letter)
                second = subs.index(letter, first + 1)
                operand = operand.diagonal(dim1=first, dim2=second)
                subs = [c for i, c in enumerate(subs) if i not in (first, second)] + [letter]
        order = sorted(range(len(subs)), key=lambda i: letters.index(subs[i]))
        aligned = operand.permute(order)
        shape = [1] * len(letters)
        for position, i in enumerate(order):
            shape[letters.index(subs[i])] = aligned.shape[position]
        aligned = aligned.reshape(shape)
        product = aligned if product is None else product * aligned
    summed = tuple(range(len(output), len(letters)))
    out = product.sum(summed) if summed else product
    return out


def _fit(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``grad`` made ``shape``: summed over the dims the operand had as 1 and the product broadcast, expanded
    along the dims the product did not vary on."""
    for dim, (got, want) in enumerate(zip(grad.shape, shape)):
        if got != want and want == 1:
            grad = grad.sum(dim, keepdim=True)
    return grad.expand(shape)


class _GradientPlan(NamedTuple):
    """The einsum that gives operand k's gradient: its terms' subscripts (``dOut``'s, the other operands',
    then one identity matrix per repeated letter of ``s_k``), the dims of ``s_k`` whose repeat each identity
    ties (``(first, repeat)``), the letters it yields (``kept``) and the dims of ``s_k`` it does not (the
    letters only ``A_k`` has)."""

    terms: tuple[str, ...]
    repeats: tuple[tuple[int, int], ...]
    kept: str
    missing: tuple[int, ...]

    @property
    def equation(self) -> str:
        return ",".join(self.terms) + "->" + self.kept


@functools.lru_cache(maxsize=1024)
def _gradient_plan(subscripts: tuple[str, ...], output: str, k: int) -> _GradientPlan:
    target = subscripts[k]
    fresh = iter(_fresh_labels(set("".join(subscripts)) | set(output), len(target) - len(set(target))))
    first: dict[str, int] = {}
    target_letters = []  # s_k with each repeat renamed
    identities, repeats = [], []  # the identity's subscripts (letter + its renamed repeat), the dims tied
    for dim, letter in enumerate(target):
        if letter in first:
            renamed = next(fresh)
            identities.append(letter + renamed)
            repeats.append((first[letter], dim))
            letter = renamed
        first.setdefault(letter, dim)
        target_letters.append(letter)
    terms = (output, *(subs for j, subs in enumerate(subscripts) if j != k), *identities)
    present = set("".join(terms))
    kept = "".join(letter for letter in target_letters if letter in present)
    missing = tuple(dim for dim, letter in enumerate(target_letters) if letter not in present)
    return _GradientPlan(terms, tuple(repeats), kept, missing)


def einsum_operand_backward(
    dout: torch.Tensor, k: int, subscripts: Sequence[str], output: str, operands: Sequence[torch.Tensor]
) -> torch.Tensor:
    """``dA_k = einsum(dOut, A_j for j ≠ k -> s_k)``, with the three cases of the module docstring: a
    repeated letter of ``s_k`` tied to its first place by an identity matrix, the letters no other term has
    expanded along, broadcast size-1 dims summed."""
    plan = _gradient_plan(tuple(subscripts), output, k)
    shape = operands[k].shape
    identities = [
        torch.eye(shape[repeat], dtype=dout.dtype, device=dout.device) for _, repeat in plan.repeats
    ]
    tensors = [dout, *(operand for j, operand in enumerate(operands) if j != k), *identities]
    if legacy_vmap_active():
        grad = einsum_by_broadcast(plan.terms, plan.kept, tensors)
    else:
        grad = torch.einsum(plan.equation, *tensors)
    for dim in plan.missing:  # the letters only A_k has: a size-1 dim, expanded by _fit
        grad = grad.unsqueeze(dim)
    grad = _fit(grad, shape)
    return grad


def einsum_jvp(
    tangents: Sequence[torch.Tensor | None],
    subscripts: Sequence[str],
    output: str,
    operands: Sequence[torch.Tensor],
) -> torch.Tensor:
    """``Ȯut = Σ_k einsum(A_1, …, Ȧ_k, …, A_n -> o)``, over the operands that have a tangent."""
    out_dot = None
    for k, tangent in enumerate(tangents):
        if tangent is None:
            continue
        factors = [tangent if j == k else operand for j, operand in enumerate(operands)]
        if legacy_vmap_active():
            term = einsum_by_broadcast(subscripts, output, factors)
        else:
            term = einsum_forward(subscripts, output, factors)
        out_dot = term if out_dot is None else out_dot + term
    if out_dot is None:
        out_dot = torch.zeros_like(einsum_forward(subscripts, output, [o.detach() for o in operands]))
    return out_dot


@fast_apply
class EinsumFunction(torch.autograd.Function):
    """``einsum`` of the operands; the last input is the equation, canonical (explicit output, ellipses
    written out: :func:`parse_equation`).

    Backward ``dA_k = einsum(dOut, A_j for j ≠ k -> s_k)``; jvp ``Σ_k einsum(…, Ȧ_k, …)``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(*inputs: Any) -> torch.Tensor:
        *operands, equation = inputs
        lhs, _, output = equation.partition("->")
        out = einsum_forward(lhs.split(","), output, operands)
        # A one-operand einsum (a transpose, a diagonal) is a view of its operand for torch; a Function
        # must return a new tensor (autograd forbids its views being modified in place): a copy. (Dynamo
        # cannot ask whether a tensor is a view: under torch.compile every one-operand result is copied.)
        if len(operands) == 1 and (torch.compiler.is_compiling() or out._is_view()):
            out = out.clone()
        return out

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        *operands, equation = inputs
        lhs, _, ctx.output_subscripts = equation.partition("->")
        ctx.subscripts = tuple(lhs.split(","))
        ctx.save_for_backward(*operands)
        ctx.save_for_forward(*operands)

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        operands = ctx.saved_tensors
        subscripts, output = ctx.subscripts, ctx.output_subscripts
        grads = [
            einsum_operand_backward(dout, k, subscripts, output, operands) if need else None
            for k, need in enumerate(ctx.needs_input_grad[:-1])
        ]
        return (*grads, None)

    @staticmethod
    def jvp(ctx: Any, *tangents: torch.Tensor | None) -> torch.Tensor:
        operands = ctx.saved_tensors
        return einsum_jvp(tangents[:-1], ctx.subscripts, ctx.output_subscripts, operands)


_EinsumFunctionTraced = without_jvp(EinsumFunction)  # what torch.compile traces


def _sublist_equation(args: Sequence[Any]) -> tuple[str, list[Any]]:
    """torch.einsum's sublist form ``einsum(A, [0, 1], B, [1, 2], [0, 2])`` as an equation and operands
    (ints 0-51 are the letters ``a-z``, ``A-Z``; ``...`` is an ellipsis)."""
    letters = string.ascii_lowercase + string.ascii_uppercase

    def subscripts(sublist: Any) -> str:
        text = ""
        for item in sublist:
            if item is Ellipsis:
                text += "..."
            elif isinstance(item, int) and not isinstance(item, bool) and 0 <= item < 52:
                text += letters[item]
            else:
                raise OpArgumentError(f"einsum: sublist entries must be ints in [0, 52) or ..., got {item!r}")
        return text

    operands = list(args[0::2][: len(args) // 2])
    groups = [subscripts(s) for s in args[1::2][: len(args) // 2]]
    output = "->" + subscripts(args[-1]) if len(args) % 2 else ""
    return ",".join(groups) + output, operands


def einsum(equation: str, *operands: Any) -> torch.Tensor:
    """Manual twin of :func:`torch.einsum`.

    Args:
        equation: subscripts of each operand, comma-separated, then optionally ``->`` and the output's
            (implicit output: the letters met once, alphabetically, after the ellipsis dims); letters
            ``a-z``, ``A-Z``, ``...`` for broadcast dims, spaces ignored.
        *operands: floating tensors of one dtype, one per subscript group; or a single list of them. The
            sublist form (``einsum(A, [0, 1], B, [1, 2], [0, 2])``) is taken too.

    Shape:
        - Output: one dim per output subscript, sized as that letter in the operands (size-1 dims
          broadcast).
        - Gradients: each the shape of its operand.

    Returns:
        The sum over the subscripts missing from the output of the products of the operands' entries, a
        new tensor (where torch returns a view of a single operand, e.g. ``"ij->ji"``, this is a copy).

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> q, k = torch.ones(1, 2, 3, 4), torch.ones(1, 2, 5, 4)
        >>> MF.einsum("bhid, bhjd -> bhij", q, k).shape
        torch.Size([1, 2, 3, 5])
        >>> MF.einsum("ii", torch.eye(3))
        tensor(3.)
        >>> a, b = (torch.randn(s, dtype=torch.double, requires_grad=True) for s in [(2, 3), (3, 4)])
        >>> product = lambda a, b: MF.einsum("ij,jk->ik", [a, b])  # a list of operands, as torch takes
        >>> torch.autograd.gradcheck(product, (a, b), check_forward_ad=True)
        True
    """
    if isinstance(equation, torch.Tensor):
        equation, operands = _sublist_equation((equation, *operands))
    elif len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    for index, operand in enumerate(operands):
        check_floating(f"operand {index}", operand)
    if not operands:
        raise OpArgumentError("einsum: at least one operand is needed")
    check_same_dtype(operands[0], **{f"operand {i}": o for i, o in enumerate(operands[1:], 1)})
    subscripts, output = parse_equation(equation, [o.shape for o in operands])
    check_einsum_sizes(subscripts, operands)
    function = _EinsumFunctionTraced if torch.compiler.is_compiling() else EinsumFunction
    return _autocast.apply(function, "lower", *operands, _canonical(subscripts, output))
