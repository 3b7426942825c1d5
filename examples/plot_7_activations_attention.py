"""
The lecture's other activations, and attention by hand
======================================================

The activation-function lecture goes past ReLU: Leaky ReLU and PReLU (a learned slope for ``x < 0``), ELU,
SELU and CELU (an exponential negative side), the smooth softplus, GELU and Mish, the clipped hardtanh; and
it argues with two failure modes, **dead units** and **saturation**. The assignment's Transformer writes
**attention** by hand. All of these are manual ops here, each with its reference forward, hand-written
backward and forward-mode derivative. This page

1. plots each activation and its derivative (from the manual backward), opens one reference formula and
   checks the slopes against the built-ins at the kinks;
2. measures dead units (a ReLU net whose units never fire gets no gradient) and saturation (gradient
   magnitudes and SELU's self-normalisation through a deep net);
3. opens the attention reference, runs it with a causal mask, checks it against
   ``F.scaled_dot_product_attention`` and measures the O(L²) probabilities its backward keeps;
4. runs a small torchvision Vision Transformer entirely on manual ops.

It runs in seconds on tiny tensors. **The full version** is the test suite's checks of these ops (every
argument, ``gradcheck`` with forward mode and double backward, ``vmap``, the conformance suite on torch's own
OpInfo and ModuleInfo inputs) and the coverage command, which runs every torchvision classifier and five
timm models (ViTs, DeiT, CSPDarkNet with LeakyReLU) on manual ops against the built-in models in float64
(its latest run is on :doc:`the coverage page </coverage>`)::

    pytest -q tests/test_attention.py tests/test_activations_more.py tests/test_smooth_activations.py
    python -m torch_cs231n.tools.manual_coverage --source timm --all
"""

import copy
import inspect

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import custom_ops.functional as MF
import custom_ops.nn as mnn
from custom_ops import attention as attention_file
from custom_ops import elu as elu_file
from custom_ops import leaky_relu as leaky_relu_file
from torch_cs231n.interop.function_mode import attach_manual_functions, manual_share
from torch_cs231n.interop.swap import to_manual
from torch_cs231n.tools.memory import saved_memory

torch.manual_seed(0)
torch.set_num_threads(1)
dtype = torch.float64

# %%
# 1. The activation functions and their slopes
# --------------------------------------------
# Each op file opens with its reference. ELU is ``x`` for ``x > 0`` and ``a (exp(x) − 1)`` below: it
# saturates to ``−a`` on the negative side only, and its slope there is ``a exp(x)``:
print(inspect.getsource(elu_file.elu_forward))
print(inspect.getsource(elu_file.elu_derivative))

# %%
# PReLU is a Leaky ReLU whose negative slope ``w`` is a parameter, learned like a weight: its backward
# returns a gradient for ``w`` too, the sum of ``dout · x`` over the negative inputs.
print(inspect.getsource(leaky_relu_file.prelu_backward))

# %%
# Each activation, manual and built-in, on the same grid; the derivative ``f'(x)`` is the input gradient
# for an upstream gradient of ones (the manual one comes from the hand-written backward). PReLU's slope
# ``w`` starts at torch's default, 0.25.
prelu_weight = torch.tensor([0.25], dtype=dtype, requires_grad=True)
ACTIVATIONS = {
    "sigmoid": (MF.sigmoid, torch.sigmoid),
    "tanh": (MF.tanh, torch.tanh),
    "relu": (MF.relu, F.relu),
    "leaky_relu": (lambda t: MF.leaky_relu(t, 0.1), lambda t: F.leaky_relu(t, 0.1)),
    "prelu": (lambda t: MF.prelu(t, prelu_weight), lambda t: F.prelu(t, prelu_weight)),
    "elu": (MF.elu, F.elu),
    "selu": (MF.selu, F.selu),
    "celu": (lambda t: MF.celu(t, 0.5), lambda t: F.celu(t, 0.5)),
    "softplus": (MF.softplus, F.softplus),
    "gelu": (MF.gelu, F.gelu),
    "mish": (MF.mish, F.mish),
    "hardtanh": (MF.hardtanh, F.hardtanh),
}


def value_and_slope(fn, x):
    """``f(x)`` and ``f'(x)`` (the input gradient for an upstream gradient of ones)."""
    x = x.detach().requires_grad_()
    y = fn(x)
    (slope,) = torch.autograd.grad(y, x, torch.ones_like(y))
    return y.detach(), slope


grid = torch.linspace(-3, 3, 601, dtype=dtype)
fig, axes = plt.subplots(3, 4, figsize=(10, 6.5), sharex=True)
print(f"{'activation':11} {'max |f − built-in|':>19} {'max |f′ − built-in|':>20}")
for ax, (name, (manual, builtin)) in zip(axes.flat, ACTIVATIONS.items()):
    y, slope = value_and_slope(manual, grid)
    y_builtin, slope_builtin = value_and_slope(builtin, grid)
    value_error, slope_error = (y - y_builtin).abs().max().item(), (slope - slope_builtin).abs().max().item()
    print(f"{name:11} {value_error:19.1e} {slope_error:20.1e}")
    ax.plot(grid, y, label="f(x)")
    ax.plot(grid, slope, "--", label="f′(x)")
    ax.axhline(0, color="0.8", lw=0.5)
    ax.axvline(0, color="0.8", lw=0.5)
    ax.set_title(name)
    ax.set_ylim(-2, 3)
axes.flat[0].legend(loc="upper left")
fig.tight_layout()
plt.show()

# %%
# At a kink the derivative is a choice: ReLU's slope at 0 could be 0 or 1. The manual ops take PyTorch's
# choice, so a model gives the same gradients on either: the slope at 0 of ReLU, Leaky ReLU, PReLU, ELU
# and SELU is the negative side's (0, the negative slope, ``a``, ``s a``), CELU's is 1, and hardtanh's is
# 0 at ±1 (the flat side's). The smooth ones (sigmoid, tanh, softplus, GELU, Mish) have no kink.
kinks = torch.tensor([-1.0, 0.0, 1.0], dtype=dtype)
print(f"{'activation':11} {'f′(−1), f′(0), f′(1), manual':>29} {'max |manual − built-in|':>24}")
for name, (manual, builtin) in ACTIVATIONS.items():
    _, slope = value_and_slope(manual, kinks)
    _, slope_builtin = value_and_slope(builtin, kinks)
    slopes = ", ".join(f"{s:7.4f}" for s in slope.tolist())
    print(f"{name:11} {slopes:>29} {(slope - slope_builtin).abs().max().item():24.1e}")

# %%
# PReLU's weight gradient on the grid, manual against built-in (only the negative half contributes):
grads = [torch.autograd.grad(fn(grid).sum(), prelu_weight)[0] for fn in ACTIVATIONS["prelu"]]
print(f"dL/dw for L = Σ prelu(x): manual {grads[0].item():.4f}, built-in {grads[1].item():.4f}")

# %%
# 2. Dead units and saturation, measured
# --------------------------------------
# **Dead units.** A ReLU unit whose pre-activation is negative for every input outputs 0 and passes no
# gradient: its weights never change again (a too large learning rate step or a bad initialisation can
# leave a net with many). Here a two-layer net of :mod:`custom_ops.nn` modules on a teacher task, whose
# first-layer bias is shifted by −3, far below the pre-activations' spread (about 0.6 at this
# initialisation): almost every first-layer unit is off for every example. We count the first-layer units
# whose weight gradient is exactly zero over a batch, then train each net for 100 Adam steps.
in_dim, hidden, num_classes, batch = 20, 64, 5, 512
inputs = torch.randn(batch, in_dim, dtype=dtype)
targets = (inputs @ torch.randn(in_dim, num_classes, dtype=dtype)).argmax(1)
ACTIVATION_MODULES = {
    "ReLU": mnn.ReLU,
    "LeakyReLU": lambda: mnn.LeakyReLU(0.1),
    "PReLU": mnn.PReLU,
    "ELU": mnn.ELU,
}


def shifted_net(activation):
    torch.manual_seed(1)  # the same weights for every activation
    net = nn.Sequential(mnn.Linear(in_dim, hidden), activation(), mnn.Linear(hidden, num_classes)).to(dtype)
    with torch.no_grad():
        net[0].bias -= 3.0
    return net


fig, ax = plt.subplots(figsize=(7, 3))
for name, activation in ACTIVATION_MODULES.items():
    net = shifted_net(activation)
    MF.softmax_loss(net(inputs), targets).backward()
    dead = (net[0].weight.grad.abs().sum(1) == 0).double().mean().item()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        optimizer.zero_grad()
        loss = MF.softmax_loss(net(inputs), targets)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    accuracy = (net(inputs).argmax(1) == targets).double().mean().item()
    print(
        f"{name:9}: first-layer units with zero gradient {dead:.0%}; after 100 steps loss {losses[-1]:.3f}, "
        f"training accuracy {accuracy:.2f}"
    )
    ax.plot(losses, label=name)
ax.set_xlabel("Adam step")
ax.set_ylabel("training loss")
ax.legend()
fig.tight_layout()
plt.show()

# %%
# The ReLU net's dead units stay dead: only the second layer's bias learns (the loss falls to the entropy
# of the class frequencies, accuracy to that of the most frequent class). Leaky ReLU, PReLU and ELU pass a
# gradient for ``x < 0``, so every unit's bias can climb back.
#
# **Saturation.** Sigmoid and tanh are flat for large ``|x|``: a saturated unit passes almost no gradient.
# And sigmoid's slope is at most 1/4 even where it is steepest, so each sigmoid layer shrinks the gradient.
# Here a 12-layer net of width 256, every layer ``Linear`` then the activation, with LeCun's
# initialisation (weights of standard deviation ``1 / sqrt(fan-in)``: what SELU's derivation assumes; "×4":
# four times that) and standard-normal inputs. For each layer we record the output's mean and standard
# deviation, the share of units whose local slope ``f'(z)`` is below 0.05 (saturated, or off for ReLU),
# and the norm of the layer's weight gradient for a loss on the last layer's output.
depth, width = 12, 256
deep_inputs = torch.randn(256, width, dtype=dtype)
DEEP = {  # name: (activation, the weights' standard deviation times sqrt(fan-in))
    "Sigmoid": (mnn.Sigmoid, 1.0),
    "Tanh": (mnn.Tanh, 1.0),
    "Tanh ×4": (mnn.Tanh, 4.0),
    "ReLU": (mnn.ReLU, 1.0),
    "ELU": (mnn.ELU, 1.0),
    "SELU": (mnn.SELU, 1.0),
}


def deep_net(activation, gain):
    torch.manual_seed(2)
    layers = []
    for _ in range(depth):
        linear = mnn.Linear(width, width).to(dtype)
        nn.init.normal_(linear.weight, std=gain * width**-0.5)
        nn.init.zeros_(linear.bias)
        layers += [linear, activation()]
    return nn.Sequential(*layers)


stats = {}
for name, (activation, gain) in DEEP.items():
    net = deep_net(activation, gain)
    means, stds, flat, h = [], [], [], deep_inputs
    for i in range(0, len(net), 2):
        z = net[i](h)
        h = net[i + 1](z)
        means.append(h.mean().item())
        stds.append(h.std().item())
        flat.append((value_and_slope(net[i + 1], z)[1] < 0.05).double().mean().item())
    h.pow(2).mean().backward()
    grad_norms = [net[i].weight.grad.norm().item() for i in range(0, len(net), 2)]
    stats[name] = (means, stds, flat, grad_norms)

print(f"{'':8} {'output mean, std':^25}  {'slope < 0.05':^13}  {'weight-gradient norm':^22}")
print(f"{'':8} {'layer 1':>12} {'layer 12':>12}  {'(all layers)':>13}  {'layer 1':>10} {'layer 12':>10}")
for name, (means, stds, flat, grad_norms) in stats.items():
    print(
        f"{name:8} {means[0]:+6.2f} {stds[0]:5.2f} {means[-1]:+6.2f} {stds[-1]:5.2f}  "
        f"{sum(flat) / depth:13.0%}  {grad_norms[0]:10.1e} {grad_norms[-1]:10.1e}"
    )

fig, (ax_std, ax_grad) = plt.subplots(1, 2, figsize=(9, 3.2))
layer_numbers = range(1, depth + 1)
for name, (_, stds, _, grad_norms) in stats.items():
    ax_std.plot(layer_numbers, stds, marker=".", label=name)
    ax_grad.plot(layer_numbers, grad_norms, marker=".", label=name)
ax_std.set_xlabel("layer")
ax_std.set_ylabel("output std")
ax_grad.set_xlabel("layer")
ax_grad.set_ylabel("weight-gradient norm")
ax_grad.set_yscale("log")
ax_grad.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %%
# Read the table against the lecture. Sigmoid's outputs are all positive (mean near 1/2) and its first
# layer's gradient is orders of magnitude smaller than its last layer's: the vanishing gradient. Tanh is
# zero-centred; with four times the weights about half of its units sit on the flat parts (the slope
# column), and the gradient no longer keeps its size across layers: the large weights multiply it on its
# way back faster than the flat slopes shrink it, so the first layer's is the largest. At this
# initialisation ReLU's outputs shrink layer after layer (it zeroes about half of each layer's
# pre-activations, the slope column; He's initialisation, twice the variance, is ReLU's). ELU's negative
# side moves the means towards zero. SELU's constants make mean 0 and variance 1 a fixed point of a layer
# at this initialisation, so its outputs keep both through all the layers (self-normalisation). SELU layer
# by layer:
means, stds, _, _ = stats["SELU"]
print("SELU mean:", " ".join(f"{m:+.2f}" for m in means))
print("SELU std: ", " ".join(f"{s:.2f}" for s in stds))

# %%
# 3. Attention by hand
# --------------------
# The assignment's Transformer computes ``softmax(Q Kᵀ / sqrt(E) + M) V``. The reference forward keeps
# every intermediate: the scores ``S`` and the probabilities ``P``, an ``L × S`` matrix per head:
print(inspect.getsource(attention_file.attention_forward))

# %%
# The backward is written out: ``dV = Pᵀ dO``, ``dP = dO Vᵀ``, the softmax's Jacobian gives
# ``dS = P ⊙ (dP − rowsum(dP ⊙ P))``, and then ``dQ = scale · dS K``, ``dK = scale · dSᵀ Q``:
print(inspect.getsource(attention_file.attention_backward))

# %%
# A causal mask (``is_causal=True``: query ``i`` sees keys ``0..i``, as a language model's decoder does),
# one sequence of 8 tokens, 2 heads of dimension 16, in float64. The probabilities are what the multi-head
# layer returns as its attention weights (:func:`custom_ops.attention.attention_and_weights`).
batch_size, heads, length, head_dim = 1, 2, 8, 16
shape = (batch_size, heads, length, head_dim)
q, k, v = (torch.randn(shape, dtype=dtype, requires_grad=True) for _ in range(3))
out, probs = attention_file.attention_and_weights(q, k, v, is_causal=True, need_weights=True)
fig, axes = plt.subplots(1, heads, figsize=(6.5, 3), layout="constrained")
for head, ax in enumerate(axes):
    image = ax.imshow(probs[0, head].detach(), cmap="viridis", vmin=0, vmax=1)
    ax.set_title(f"head {head}: P")
    ax.set_xlabel("key")
    ax.set_ylabel("query")
fig.colorbar(image, ax=axes, shrink=0.8)
plt.show()
print("rows of P sum to 1:", torch.allclose(probs.sum(-1), torch.ones(1, dtype=dtype)))
print("above the diagonal P is 0:", probs.detach().triu(1).abs().max().item())

# %%
# Output and gradients against torch's ``F.scaled_dot_product_attention`` (same inputs, same upstream
# gradient), and ``dV = Pᵀ dO`` computed once more by hand from the P above:
dout = torch.randn_like(out)
grads = torch.autograd.grad(out, (q, k, v), dout)
out_builtin = F.scaled_dot_product_attention(q, k, v, is_causal=True)
grads_builtin = torch.autograd.grad(out_builtin, (q, k, v), dout)
print("max |O − built-in|:", (out - out_builtin).abs().max().item())
for name, g, g_builtin in zip(("dQ", "dK", "dV"), grads, grads_builtin):
    print(f"max |{name} − built-in|:", (g - g_builtin).abs().max().item())
print("max |dV − Pᵀ dO|:  ", (grads[2] - probs.detach().mT @ dout).abs().max().item())

# %%
# **What the backward keeps.** The reference saves Q, K, V and P for its backward, like the textbook: P
# has ``heads × L × L`` numbers. torch's flash and memory-efficient kernels (the CPU one included) keep
# the output and one log-sum-exp per query row instead, and recompute P block by block in their backward.
# Measured with saved-tensor hooks (:func:`torch_cs231n.tools.memory.saved_memory`, every saved storage
# counted once), float32, 2 heads of dimension 32:
lengths = [64, 128, 256, 512, 1024]
saved = {"manual": [], "built-in": []}
print(f"{'L':>5} {'manual KiB':>11} {'built-in KiB':>13} {'P alone KiB':>12}")
for length in lengths:
    qkv = [torch.randn(1, 2, length, 32, requires_grad=True) for _ in range(3)]
    saved["manual"].append(saved_memory(MF.scaled_dot_product_attention, qkv).bytes)
    saved["built-in"].append(saved_memory(F.scaled_dot_product_attention, qkv).bytes)
    p_bytes = 2 * length * length * 4
    manual_kib, builtin_kib = saved["manual"][-1] / 1024, saved["built-in"][-1] / 1024
    print(f"{length:5} {manual_kib:11.0f} {builtin_kib:13.0f} {p_bytes / 1024:12.0f}")
fig, ax = plt.subplots(figsize=(5, 3.2))
for label, values in saved.items():
    ax.loglog(lengths, [b / 1024 for b in values], marker="o", label=label)
ax.set_xlabel("sequence length L")
ax.set_ylabel("saved for backward (KiB)")
ax.legend()
fig.tight_layout()
plt.show()

# %%
# The manual op's saved bytes grow as L², the built-in's as L: P, ``2 · L²`` float32 numbers, outweighs Q, K
# and V together (``3 · 2 · L · 32``) from L = 96 on.
# That is the price of the course's formulation; the multi-head layer's ``need_weights=True`` (torch's
# default) returns these same probabilities, so there the built-in materialises them too.
# :doc:`The speed guide </guide/speed>` has the benchmark's figures.
#
# 4. A Transformer on manual ops
# ------------------------------
# A tiny torchvision Vision Transformer (32×32 images cut into 8×8 patches, 2 encoder layers of 2 heads,
# width 32). ``to_manual`` swaps its layers for their manual twins (``nn.MultiheadAttention`` included);
# ``attach_manual_functions`` also routes the ``torch.nn.functional`` calls and matrix products its own
# ``forward`` makes. :func:`~torch_cs231n.interop.function_mode.manual_share` runs one forward and
# backward pass and counts the share of layer calls and of floating-point work done in manual ops:
torch.manual_seed(3)
vit = torchvision.models.VisionTransformer(
    image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10
)
builtin_vit = copy.deepcopy(vit)
images = torch.randn(2, 3, 32, 32)
print("built-in:\n", manual_share(builtin_vit, images), sep="")
manual_vit = attach_manual_functions(to_manual(vit))
share = manual_share(manual_vit, images)
print("after to_manual + attach_manual_functions:\n", share, sep="")

# %%
# Same weights, float64, same input: the logits and the input gradient of the two models. The manual
# model's graph is made of the manual Functions (its last step is the manual linear's), and the two agree
# to float64's rounding or better.
images64 = images.to(dtype).requires_grad_()
logits_builtin = builtin_vit.to(dtype)(images64)
logits_manual = manual_vit.to(dtype)(images64)
cotangent = torch.randn_like(logits_builtin)
(grad_builtin,) = torch.autograd.grad(logits_builtin, images64, cotangent)
(grad_manual,) = torch.autograd.grad(logits_manual, images64, cotangent)
manual_step, builtin_step = type(logits_manual.grad_fn).__name__, type(logits_builtin.grad_fn).__name__
print(f"the logits' last step: manual {manual_step}, built-in {builtin_step}")
print("max |logits manual − built-in|:        ", (logits_manual - logits_builtin).abs().max().item())
print("max |input gradient manual − built-in|:", (grad_manual - grad_builtin).abs().max().item())

# %%
# :doc:`The coverage page </coverage>` has the same measurement for every torchvision classifier (ViT,
# Swin, MaxViT included) and five timm models, at their real sizes.
