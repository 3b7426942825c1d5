"""The manual attention: ``scaled_dot_product_attention`` against the built-in (masks, causal, gqa, fully
masked rows, dropout with a fixed mask), ``multi_head_attention_forward`` and ``MultiheadAttention`` against
torch's in float64, and a small torchvision ViT run on them end to end."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import custom_ops.functional as MF
from custom_ops import nn as mnn
from custom_ops.attention import AttentionFunction, attention_forward
from torch_cs231n.interop.function_mode import ManualFunctions, attach_manual_functions, manual_share
from torch_cs231n.interop.swap import to_manual

DT = torch.float64


def normal(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=DT, generator=torch.Generator().manual_seed(seed)).requires_grad_(True)


def outputs_and_grads(fn, tensors: list[torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    inputs = [t.detach().clone().requires_grad_(t.requires_grad) for t in tensors]
    out = fn(*inputs)
    cotangent = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape)
    grads = torch.autograd.grad((out * cotangent).sum(), [t for t in inputs if t.requires_grad])
    return out, grads


def assert_same_as_builtin(manual, builtin, tensors: list[torch.Tensor], what: str) -> None:
    out, grads = outputs_and_grads(manual, tensors)
    ref, ref_grads = outputs_and_grads(builtin, tensors)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12, msg=lambda m: f"{what} output: {m}")
    for i, (g, r) in enumerate(zip(grads, ref_grads)):
        torch.testing.assert_close(
            g, r, rtol=1e-12, atol=1e-12, msg=lambda m, i=i: f"{what} gradient {i}: {m}"
        )


# ---------------------------------------------------------------------------- scaled_dot_product_attention
CASES = {
    "heads": ((2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 3), {}),
    "causal-L<S": ((2, 3, 4), (2, 5, 4), (2, 5, 2), {"is_causal": True}),
    "causal-L>S": ((2, 5, 4), (2, 3, 4), (2, 3, 2), {"is_causal": True}),
    "gqa": ((1, 6, 3, 2), (1, 2, 4, 2), (1, 3, 4, 3), {"enable_gqa": True}),
    "broadcast-batch": ((3, 4), (2, 2, 5, 4), (2, 2, 5, 3), {"scale": 0.3}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_attention_matches_builtin(name: str) -> None:
    q, k, v, kwargs = CASES[name]
    tensors = [normal(*q, seed=0), normal(*k, seed=1), normal(*v, seed=2)]
    assert_same_as_builtin(
        lambda *t: MF.scaled_dot_product_attention(*t, **kwargs),
        lambda *t: F.scaled_dot_product_attention(*t, **kwargs),
        tensors,
        name,
    )


@pytest.mark.parametrize("kind", ["bool", "float-minus-inf"])
def test_fully_masked_rows_give_zero_output_and_gradients_like_torch(kind: str) -> None:
    """torch's kernels return 0 for a query whose keys are all masked out (not NaN), with 0 gradients."""
    allowed = torch.rand(4, 5, generator=torch.Generator().manual_seed(0)) > 0.4
    allowed[:, 0] = True
    allowed[2] = False
    mask = allowed if kind == "bool" else torch.zeros(4, 5, dtype=DT).masked_fill(~allowed, -torch.inf)
    tensors = [normal(2, 4, 3, seed=0), normal(2, 5, 3, seed=1), normal(2, 5, 2, seed=2)]
    assert_same_as_builtin(
        lambda *t: MF.scaled_dot_product_attention(*t, mask),
        lambda *t: F.scaled_dot_product_attention(*t, mask),
        tensors,
        kind,
    )
    out, (dq, *_) = outputs_and_grads(lambda *t: MF.scaled_dot_product_attention(*t, mask), tensors)
    assert out[:, 2].eq(0).all() and dq[:, 2].eq(0).all(), "fully masked row: output and dq should be 0"


def test_float_mask_gradient_is_ds_summed_over_broadcast_dims() -> None:
    tensors = [
        normal(2, 2, 3, 4, seed=0),
        normal(2, 2, 5, 4, seed=1),
        normal(2, 2, 5, 3, seed=2),
        normal(3, 5, seed=3),
    ]
    assert_same_as_builtin(MF.scaled_dot_product_attention, F.scaled_dot_product_attention, tensors, "mask")
    assert torch.autograd.gradcheck(MF.scaled_dot_product_attention, tuple(tensors), check_forward_ad=True)


def test_dropout_uses_the_manual_formula_with_the_drawn_mask_and_torchs_draws() -> None:
    q, k, v = normal(2, 3, 4, seed=0), normal(2, 6, 4, seed=1), normal(2, 6, 2, seed=2)
    torch.manual_seed(5)
    out = MF.scaled_dot_product_attention(q, k, v, dropout_p=0.4)
    torch.manual_seed(5)
    keep = torch.empty(2, 3, 6, dtype=DT).bernoulli_(0.6)
    probs = torch.softmax(q @ k.mT / 2, -1)
    torch.testing.assert_close(out, (probs * keep / 0.6) @ v, msg="dropout: not P * keep / (1 - p) V")
    torch.manual_seed(5)
    ref = F.scaled_dot_product_attention(q, k, v, dropout_p=0.4)
    torch.testing.assert_close(out, ref, msg="dropout: not the built-in's draws for the same seed (CPU)")
    # statistics: about 1 - p of the probabilities kept, the expected output unchanged
    big = torch.zeros(64, 32, 8, dtype=DT)
    torch.manual_seed(0)
    _, weights = MF.multi_head_attention_forward(
        big,
        big,
        big,
        8,
        1,
        torch.eye(24, 8, dtype=DT),
        None,
        None,
        None,
        False,
        0.4,
        torch.eye(8, dtype=DT),
        None,
        average_attn_weights=False,
    )
    kept = weights.ne(0).double().mean().item()
    assert abs(kept - 0.6) < 0.01, f"kept fraction {kept:.3f}, expected 0.6"
    assert abs(weights.sum(-1).mean().item() - 1) < 0.01, (
        "inverted scaling should keep each row's mean mass 1"
    )


def test_dropout_one_gives_zeros() -> None:
    q = normal(2, 3, 4, seed=0)
    out = MF.scaled_dot_product_attention(q, q, q, dropout_p=1.0)
    assert out.eq(0).all(), "dropout_p=1 should drop every probability"


def test_saved_tensors_are_q_k_v_and_the_probabilities() -> None:
    q, k, v = normal(2, 3, 4, seed=0), normal(2, 5, 4, seed=1), normal(2, 5, 2, seed=2)
    out = MF.scaled_dot_product_attention(q, k, v)
    saved = [t for t in out.grad_fn.saved_tensors if t is not None]
    assert [tuple(t.shape) for t in saved] == [(2, 3, 4), (2, 5, 4), (2, 5, 2), (2, 3, 5)], "saved tensors"
    ref, probs = attention_forward(q, k, v, None, None, 0.0, 0.5)
    torch.testing.assert_close(out, ref, msg="the Function output should be the reference forward")
    torch.testing.assert_close(saved[3], probs, msg="the fourth saved tensor should be P")
    assert isinstance(out.grad_fn, AttentionFunction._backward_cls), "not the manual Function"


def test_vmap_double_backward_and_compile() -> None:
    x = normal(3, 2, 4, 5, seed=0).detach()
    torch.testing.assert_close(
        torch.func.vmap(MF.scaled_dot_product_attention)(x, x, x), MF.scaled_dot_product_attention(x, x, x)
    )
    tensors = (normal(2, 3, 2, seed=1), normal(2, 4, 2, seed=2), normal(2, 4, 3, seed=3))
    assert torch.autograd.gradgradcheck(
        lambda *t: MF.scaled_dot_product_attention(*t, is_causal=True), tensors
    )
    torch._dynamo.reset()
    compiled = torch.compile(MF.scaled_dot_product_attention, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(*tensors), MF.scaled_dot_product_attention(*tensors))


@pytest.mark.parametrize("randomness", ["same", "different"])
def test_dropout_under_vmap_follows_randomness(randomness: str) -> None:
    """One mask for the whole batch with "same", one per element with "different"; "error" refuses."""
    x = torch.ones(4, 2, 3, 5, dtype=DT)

    def attend(t: torch.Tensor) -> torch.Tensor:
        return MF.scaled_dot_product_attention(t, t, t, dropout_p=0.5)

    out = torch.func.vmap(attend, randomness=randomness)(x)
    same = all(torch.equal(out[0], o) for o in out[1:])
    assert same == (randomness == "same"), f"randomness={randomness!r}: masks equal across the batch: {same}"
    with pytest.raises(RuntimeError, match="randomness"):
        torch.func.vmap(attend)(x)


def test_per_example_gradients_under_vmap_match_a_loop() -> None:
    q, k, v = normal(3, 2, 4, 2, seed=0), normal(3, 2, 5, 2, seed=1), normal(3, 2, 5, 3, seed=2)

    def loss(q1: torch.Tensor, k1: torch.Tensor, v1: torch.Tensor) -> torch.Tensor:
        return MF.scaled_dot_product_attention(q1, k1, v1, is_causal=True).square().sum()

    batched = torch.func.vmap(torch.func.grad(loss, argnums=(0, 1, 2)))(q, k, v)
    for i in range(3):
        looped = torch.autograd.grad(loss(q[i], k[i], v[i]), (q, k, v))
        for j, (b, g) in enumerate(zip(batched, looped)):
            torch.testing.assert_close(b[i], g[i], msg=lambda m, i=i, j=j: f"example {i} gradient {j}: {m}")


def test_autocast_computes_in_the_lower_precision_like_the_builtin() -> None:
    q = torch.randn(2, 3, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, ref = MF.scaled_dot_product_attention(q, q, q), F.scaled_dot_product_attention(q, q, q)
    assert out.dtype == ref.dtype == torch.bfloat16, f"autocast dtype {out.dtype}, torch's {ref.dtype}"


def test_function_mode_routes_both_attention_functions() -> None:
    q = normal(2, 3, 4, seed=0)
    w, ow = normal(12, 4, seed=1), normal(4, 4, seed=2)
    mode = ManualFunctions()
    with mode:
        out = F.scaled_dot_product_attention(q, q, q, None, 0.0, True)
        mha, _ = F.multi_head_attention_forward(q, q, q, 4, 2, w, None, None, None, False, 0.0, ow, None)
    assert type(out.grad_fn).__name__ == "AttentionFunctionBackward", (
        "F.scaled_dot_product_attention not routed"
    )
    ref, _ = F.multi_head_attention_forward(q, q, q, 4, 2, w, None, None, None, False, 0.0, ow, None)
    torch.testing.assert_close(mha, ref, rtol=1e-12, atol=1e-12)
    assert not mode.fallbacks, f"fallbacks: {dict(mode.fallbacks)}"


# ----------------------------------------------------------------------------------- multi-head attention
def mha_pair(seed: int = 0, **kwargs) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    builtin = nn.MultiheadAttention(8, 2, dtype=DT, **kwargs)
    manual = mnn.MultiheadAttention(8, 2, dtype=DT, **kwargs)
    manual.load_state_dict(builtin.state_dict())
    return manual, builtin


@pytest.mark.parametrize(
    ("kwargs", "call"),
    [
        ({}, {"need_weights": True}),
        ({}, {"need_weights": True, "average_attn_weights": False}),
        ({"batch_first": True}, {"need_weights": False}),
        ({"kdim": 5, "vdim": 3}, {}),
        ({"add_bias_kv": True, "add_zero_attn": True, "bias": False}, {}),
        ({}, {"key_padding_mask": "bool"}),
        ({"batch_first": True}, {"key_padding_mask": "float", "attn_mask": "causal", "need_weights": False}),
        ({}, {"attn_mask": "causal", "is_causal": True, "need_weights": False}),
        ({}, {"unbatched": True}),
    ],
    ids=[
        "weights",
        "per-head",
        "batch_first",
        "kdim-vdim",
        "bias-kv",
        "kpm-bool",
        "kpm-float-bf",
        "causal",
        "unbatched",
    ],
)
def test_multihead_attention_module_matches_builtin(kwargs: dict, call: dict) -> None:
    manual, builtin = mha_pair(**kwargs)
    call = dict(call)
    unbatched = call.pop("unbatched", False)
    shape = (5, 8) if unbatched else ((2, 5, 8) if kwargs.get("batch_first") else (5, 2, 8))
    x = normal(*shape, seed=1)
    key = normal(*shape[:-1], kwargs.get("kdim", 8), seed=2)
    value = normal(*shape[:-1], kwargs.get("vdim", 8), seed=3)
    if call.get("key_padding_mask") == "bool":
        padding = torch.zeros(2, 5, dtype=torch.bool)
        padding[1, -2:] = True
        call["key_padding_mask"] = padding
    elif call.get("key_padding_mask") == "float":
        call["key_padding_mask"] = torch.randn(2, 5, dtype=DT)
    if call.get("attn_mask") == "causal":
        call["attn_mask"] = nn.Transformer.generate_square_subsequent_mask(5, dtype=DT)
    results = []
    for module in (manual, builtin):
        inputs = [t.detach().clone().requires_grad_(True) for t in (x, key, value)]
        out, weights = module(*inputs, **call)
        loss = (out * torch.linspace(-1, 1, out.numel(), dtype=DT).view(out.shape)).sum()
        if weights is not None:
            loss = (
                loss + (weights * torch.linspace(0, 1, weights.numel(), dtype=DT).view(weights.shape)).sum()
            )
        grads = torch.autograd.grad(loss, [*inputs, *module.parameters()])
        results.append((out, weights, grads))
    (out, weights, grads), (ref, ref_weights, ref_grads) = results
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12, msg=lambda m: f"output: {m}")
    assert (weights is None) == (ref_weights is None), "need_weights: weights returned or not as torch"
    if weights is not None:
        torch.testing.assert_close(
            weights, ref_weights, rtol=1e-12, atol=1e-12, msg=lambda m: f"weights: {m}"
        )
    for i, (g, r) in enumerate(zip(grads, ref_grads)):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12, msg=lambda m, i=i: f"gradient {i}: {m}")


def test_multihead_attention_state_dict_round_trip_both_ways() -> None:
    manual, builtin = mha_pair(seed=1, add_bias_kv=True)
    other_manual, other_builtin = mha_pair(seed=2, add_bias_kv=True)
    other_manual.load_state_dict(builtin.state_dict())
    other_builtin.load_state_dict(manual.state_dict())
    for (key, a), b in zip(other_manual.state_dict().items(), builtin.state_dict().values()):
        assert torch.equal(a, b), f"{key} not loaded into the manual module"
    for (key, a), b in zip(other_builtin.state_dict().items(), manual.state_dict().values()):
        assert torch.equal(a, b), f"{key} not loaded into the built-in module"


def test_manual_module_never_takes_torchs_fast_path() -> None:
    manual, builtin = mha_pair()
    manual.eval()
    x = torch.randn(5, 2, 8, dtype=DT)
    with torch.no_grad(), ManualFunctions() as mode:
        out, _ = manual(x, x, x)
    assert not mode.fallbacks
    torch.testing.assert_close(out, builtin.eval()(x, x, x)[0], rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------- a torchvision ViT
def test_tiny_vision_transformer_on_manual_ops_equals_builtin() -> None:
    torch.manual_seed(0)
    builtin = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5
    ).to(DT)
    manual = attach_manual_functions(
        to_manual(
            torchvision.models.VisionTransformer(
                image_size=32,
                patch_size=8,
                num_layers=2,
                num_heads=2,
                hidden_dim=16,
                mlp_dim=32,
                num_classes=5,
            ).to(DT)
        )
    )
    manual.load_state_dict(builtin.state_dict())
    attention = [type(m) for m in manual.modules() if isinstance(m, nn.MultiheadAttention)]
    assert attention == [mnn.MultiheadAttention] * 2, f"attention layers after to_manual: {attention}"
    x = torch.randn(2, 3, 32, 32, dtype=DT)
    out, (dx,) = outputs_and_grads(manual, [x.requires_grad_(True)])
    ref, (ref_dx,) = outputs_and_grads(builtin, [x])
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12, msg=lambda m: f"ViT logits: {m}")
    torch.testing.assert_close(dx, ref_dx, rtol=1e-12, atol=1e-12, msg=lambda m: f"ViT input gradient: {m}")
    share = manual_share(manual, torch.randn(1, 3, 32, 32, dtype=DT))
    assert "multi_head_attention_forward" not in share.builtin_calls, f"built-in: {share.builtin_calls}"
    assert "scaled_dot_product_attention" not in share.builtin_calls, f"built-in: {share.builtin_calls}"
    assert share.layer_calls == 1.0, f"layer calls {share.layer_calls}: built-in {share.why_builtin}"
