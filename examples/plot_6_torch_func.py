"""
Forward mode and torch.func on the manual ops
=============================================

Every manual op has, beside its hand-written backward, a hand-written **forward-mode derivative** (its
``jvp``) and a rule for ``torch.func.vmap``. So the manual ops work under ``torch.autograd.forward_ad`` and
every ``torch.func`` transform (``jvp``, ``vmap``, ``grad``, ``jacfwd``, ``jacrev``, ``hessian``,
``functional_call``) as their built-in twins do. This page

1. opens the reference formulas an op computes with (its file's top, :func:`custom_ops.reference_path`);
2. checks forward mode: ``torch.func.jvp`` against finite differences and the built-in, dual numbers,
   ``jacfwd`` against ``jacrev``;
3. batches with ``vmap``: against a Python loop, then **per-sample gradients** of small nets built from
   :mod:`custom_ops.nn` modules;
4. computes Hessian-vector products (forward-over-reverse), and says which ops cannot;
5. runs dropout under ``vmap`` with each of torch's ``randomness=`` settings.

Everything runs in float64 on tiny tensors, in seconds. **The full version** is the test suite's checks of
every op and mode of the registry (``gradcheck`` with forward mode and batched gradients, ``vmap`` against
a loop and the built-in, per-sample gradients of the FC net, conv nets and a ResNet-18) and the
forward-mode column of ``cs231n gradcheck``::

    pytest -q tests/test_func.py tests/test_func_conv_pool.py tests/test_func_models.py
    cs231n gradcheck
"""

import inspect
import time

import matplotlib.pyplot as plt
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jacfwd, jacrev, jvp, vmap

import custom_ops
import custom_ops.functional as MF
import custom_ops.nn as mnn
from custom_ops import relu as relu_file
from custom_ops import softmax as softmax_file
from custom_ops.registry import OPS

torch.manual_seed(0)
torch.set_num_threads(1)
dtype = torch.float64

# %%
# 1. The reference formulas
# -------------------------
# Each op file opens with its *reference*: the forward, the backward and the forward-mode derivative written
# as the course writes them. ReLU's tangent is the input's tangent through the same on/off mask as its
# gradient (the Jacobian is diagonal):
print(inspect.getsource(relu_file.relu_jvp_reference))

# %%
# Softmax's Jacobian is ``diag(s) - s sᵀ``, symmetric, so its tangent has the backward's form with the
# tangent in place of the upstream gradient: ``ṡ = s ⊙ (ẋ − Σ s ẋ)``.
print(inspect.getsource(softmax_file.softmax_jvp_reference))

# %%
# The Function's ``jvp`` staticmethod, beside its ``backward``, calls it with the saved output:
print(inspect.getsource(softmax_file.SoftmaxFunction.jvp))

# %%
# By default some ops run tuned formulations (the same math with fewer temporaries, fused kernels, conv's
# timed routes). Inside ``custom_ops.reference_path()`` (or with ``CS231N_REFERENCE=1``) every op computes
# with exactly the reference formulas; the two paths agree to rounding:
x = torch.randn(2, 5, dtype=dtype, requires_grad=True)
dout = torch.randn(2, 5, dtype=dtype)
out = MF.softmax(x, dim=1)
(dx,) = torch.autograd.grad(out, x, dout)
with custom_ops.reference_path():
    out_ref = MF.softmax(x, dim=1)
    (dx_ref,) = torch.autograd.grad(out_ref, x, dout)
    print("reference path active inside the block:", custom_ops.reference_path_active())
print("and after it:", custom_ops.reference_path_active())
print(
    "softmax, default vs reference: output",
    (out - out_ref).abs().max().item(),
    " gradient",
    (dx - dx_ref).abs().max().item(),
)

# %%
# 2. Forward mode
# ---------------
# A Jacobian-vector product ``J ẋ`` is the directional derivative of the op at ``x`` along ``ẋ``: one
# forward pass carries the tangent beside the value. ``torch.func.jvp`` returns both. We check softmax's
# against the formula written out, against centred finite differences ``(f(x + hẋ) − f(x − hẋ)) / 2h``, and
# against the built-in's.
x = torch.tensor([1.0, 2.0, 0.5, -1.0], dtype=dtype)
x_dot = torch.tensor([0.3, -0.2, 1.0, 0.0], dtype=dtype)
s, s_dot = jvp(lambda t: MF.softmax(t, dim=0), (x,), (x_dot,))
by_hand = s * (x_dot - (s * x_dot).sum())
h = 1e-6
finite_diff = (MF.softmax(x + h * x_dot, dim=0) - MF.softmax(x - h * x_dot, dim=0)) / (2 * h)
_, builtin_dot = jvp(lambda t: F.softmax(t, dim=0), (x,), (x_dot,))
print("s               ", s)
print("ṡ  (manual jvp)  ", s_dot)
print("s ⊙ (ẋ − Σ s ẋ)  ", by_hand)
print("finite difference", finite_diff)
print("built-in jvp     ", builtin_dot)
print("max |manual − finite difference|:", (s_dot - finite_diff).abs().max().item())
print("max |manual − built-in|:         ", (s_dot - builtin_dot).abs().max().item())

# %%
# The tangents sum to zero, as they must: the probabilities always sum to one.
print("Σ ṡ =", s_dot.sum().item())

# %%
# The same through ``torch.autograd.forward_ad``'s dual numbers, ``x + ε ẋ`` with ``ε² = 0``: every op on
# a dual tensor returns a dual tensor, its tangent computed by the op's ``jvp``. Here a small layer,
# ``tanh(W x + b)``, whose tangent is ``(1 − y²) ⊙ (W ẋ)``:
W = 0.5 * torch.randn(3, 4, dtype=dtype)
b = torch.randn(3, dtype=dtype)
with fwAD.dual_level():
    dual = fwAD.make_dual(x, x_dot)
    y_dual = MF.tanh(MF.linear(dual, W, b))
    y, y_dot = fwAD.unpack_dual(y_dual)
print("ẏ (dual numbers)  ", y_dot)
print("(1 − y²) ⊙ (W ẋ)  ", (1 - y**2) * (W @ x_dot))


# %%
# A whole Jacobian is a stack of such products. ``jacfwd`` builds it column by column, one ``jvp`` per
# input (here 4); ``jacrev`` row by row, one vector-Jacobian product (the backward) per output (here 3).
# Both are batched with ``vmap``, so each is one call of the op's ``jvp`` or ``backward`` on a batch of
# tangents or gradients. They must agree with each other and with the built-in's:
def layer(t, linear=MF.linear, tanh=MF.tanh):
    return tanh(linear(t, W, b))


J_fwd = jacfwd(layer)(x)
J_rev = jacrev(layer)(x)
J_builtin = jacfwd(lambda t: layer(t, F.linear, torch.tanh))(x)
print(J_fwd)
print("max |jacfwd − jacrev|:", (J_fwd - J_rev).abs().max().item())
print("max |jacfwd − built-in|:", (J_fwd - J_builtin).abs().max().item())

# %%
# Forward mode costs one pass per input direction, reverse mode one per output: ``jacfwd`` suits functions
# with few inputs and many outputs, ``jacrev`` (and plain ``backward``) the usual case of many parameters
# and one loss.
#
# 3. vmap: one call for a batch
# -----------------------------
# ``vmap`` turns a function written for one example into one for a batch, without a Python loop: each
# manual op receives the whole batch (its vmap rule moves the batch dim where the op's formulas expect
# it). Here a layer written for a single vector, against a loop over 6 vectors:
X = torch.randn(6, 4, dtype=dtype)
batched = vmap(layer)(X)
looped = torch.stack([layer(row) for row in X])
print("vmap output", tuple(batched.shape), " max |vmap − loop|:", (batched - looped).abs().max().item())

# %%
# Per-sample gradients
# ^^^^^^^^^^^^^^^^^^^^
# Training reduces a batch's gradients to their mean; DP-SGD (clipping each example's gradient),
# influence functions and data debugging need each example's own. ``torch.func.functional_call`` runs a
# module with the parameters it is given, ``grad`` differentiates the loss of *one* example with respect
# to them, and ``vmap`` maps that over the batch.
#
# A small data set: 3 classes in 20 dimensions, labelled by a random linear "teacher"; 10% of the labels
# are then flipped to a wrong class. A two-layer net of :mod:`custom_ops.nn` modules trains for 20 steps:
# enough to learn the teacher's rule, not yet enough to memorise the flipped labels (trained longer, it
# memorises them too).
num_train, dim, num_classes = 300, 20, 3
X = torch.randn(num_train, dim, dtype=dtype)
teacher = torch.randn(dim, num_classes, dtype=dtype)
labels = (X @ teacher).argmax(1)
flipped = torch.rand(num_train) < 0.1
labels[flipped] = (labels[flipped] + torch.randint(1, num_classes, (int(flipped.sum()),))) % num_classes

fc_net = nn.Sequential(mnn.Linear(dim, 64), mnn.ReLU(), mnn.Linear(64, num_classes)).to(dtype)
optimizer = torch.optim.Adam(fc_net.parameters(), lr=1e-2)
for _ in range(20):
    optimizer.zero_grad()
    loss = MF.softmax_loss(fc_net(X), labels)
    loss.backward()
    optimizer.step()
fitted = fc_net(X).argmax(1) == labels
print(
    f"training loss {loss.item():.3f}; labels fitted: clean {fitted[~flipped].double().mean().item():.2f}, "
    f"flipped {fitted[flipped].double().mean().item():.2f}"
)


# %%
# The loss of one example, as a function of the parameters (a dict of tensors), and its gradient for every
# example in one call. The model sees a batch of one (``x[None]``), as it would in a loop.
def example_loss(params, model, x, y):
    scores = functional_call(model, params, (x[None],))
    return MF.softmax_loss(scores, y[None])


def per_sample_grads(model, inputs, targets):
    params = {name: p.detach() for name, p in model.named_parameters()}
    return vmap(grad(example_loss), in_dims=(None, None, 0, 0))(params, model, inputs, targets)


def looped_grads(model, inputs, targets):
    params = {name: p.detach().requires_grad_() for name, p in model.named_parameters()}
    grads = [
        torch.autograd.grad(example_loss(params, model, x, y), list(params.values()))
        for x, y in zip(inputs, targets)
    ]
    return {name: torch.stack([g[i] for g in grads]) for i, name in enumerate(params)}


start = time.perf_counter()
fc_grads = per_sample_grads(fc_net, X, labels)
vmap_seconds = time.perf_counter() - start
start = time.perf_counter()
fc_loop = looped_grads(fc_net, X, labels)
loop_seconds = time.perf_counter() - start
for name, g in fc_grads.items():
    print(f"{name:9} {tuple(g.shape)!s:14} max |vmap − loop| {(g - fc_loop[name]).abs().max().item():.1e}")
print(f"{num_train} examples: vmap {vmap_seconds * 1e3:.0f} ms, Python loop {loop_seconds * 1e3:.0f} ms")

# %%
# The same weights in the built-in twins (``torch.nn.Linear``, ``torch.nn.ReLU``; ``load_state_dict``
# works both ways) give the same per-sample gradients:
builtin_net = nn.Sequential(nn.Linear(dim, 64), nn.ReLU(), nn.Linear(64, num_classes)).to(dtype)
builtin_net.load_state_dict(fc_net.state_dict())
builtin_grads = per_sample_grads(builtin_net, X, labels)
print("max |manual − built-in|:", max((fc_grads[k] - builtin_grads[k]).abs().max().item() for k in fc_grads))

# %%
# Each example's gradient norm over all parameters. The examples whose labels were flipped are the ones
# the net has not fitted: their gradients are several times larger than the clean examples'. (DP-SGD clips
# exactly these norms.)
norms = torch.cat([g.flatten(1) for g in fc_grads.values()], dim=1).norm(dim=1)
print(
    f"median gradient norm: clean {norms[~flipped].median().item():.3f}, "
    f"flipped {norms[flipped].median().item():.3f}"
)
fig, ax = plt.subplots(figsize=(7, 3))
bins = torch.logspace(norms.min().log10().item(), norms.max().log10().item(), 30).tolist()
ax.hist(norms[~flipped].tolist(), bins=bins, alpha=0.7, label="clean label")
ax.hist(norms[flipped].tolist(), bins=bins, alpha=0.7, label="flipped label")
ax.set_xscale("log")
ax.set_xlabel("per-sample gradient norm")
ax.set_ylabel("examples")
ax.legend()
fig.tight_layout()
plt.show()

# %%
# The same for a small conv net (conv, ReLU, max pooling, affine) on 8x8 images: the conv and pooling
# ops' vmap rules pass the batch of examples to one call.
conv_net = nn.Sequential(
    mnn.Conv2d(3, 8, 3, padding=1), mnn.ReLU(), mnn.MaxPool2d(2), nn.Flatten(), mnn.Linear(8 * 4 * 4, 10)
).to(dtype)
images = torch.randn(16, 3, 8, 8, dtype=dtype)
image_labels = torch.randint(0, 10, (16,))
conv_grads = per_sample_grads(conv_net, images, image_labels)
conv_loop = looped_grads(conv_net, images, image_labels)
for name, g in conv_grads.items():
    print(f"{name:9} {tuple(g.shape)!s:18} max |vmap − loop| {(g - conv_loop[name]).abs().max().item():.1e}")

# %%
# Batch norm's training-mode statistics mix the examples of a batch, so a per-sample gradient through it is
# not defined; as for torch's own batch norm, use it in eval mode under ``vmap`` or replace its running
# statistics with ``torch.func.replace_all_batch_norm_modules_``.
#
# 4. Hessian-vector products: forward over reverse
# ------------------------------------------------
# ``grad(f)`` is a function like any other, so forward mode can differentiate it: ``jvp(grad(f), (w,),
# (v,))`` is the Hessian-vector product ``H v``, the curvature of ``f`` along ``v``, at the cost of about two
# gradients and without forming ``H``. It differentiates the hand-written *backward* with forward mode, so
# it needs ops whose backward is itself differentiable. Here the loss of a small GELU net as a function of
# its first layer's weight:
x_batch = torch.randn(8, 5, dtype=dtype)
y_batch = torch.randint(0, 3, (8,))
W2 = torch.randn(3, 6, dtype=dtype)


def net_loss(W1, linear=MF.linear, gelu=MF.gelu, loss=MF.softmax_loss):
    return loss(linear(gelu(linear(x_batch, W1)), W2), y_batch)


W1 = torch.randn(6, 5, dtype=dtype)
v = torch.randn(6, 5, dtype=dtype)
_, hvp = jvp(grad(net_loss), (W1,), (v,))
_, hvp_builtin = jvp(grad(lambda w: net_loss(w, F.linear, F.gelu, F.cross_entropy)), (W1,), (v,))
hvp_finite = (grad(net_loss)(W1 + h * v) - grad(net_loss)(W1 - h * v)) / (2 * h)
hessian = torch.func.hessian(net_loss)(W1)  # (6, 5, 6, 5): jacfwd(jacrev(f)), also forward over reverse
print("H v, first row:          ", hvp[0])
print("max |manual − built-in|:           ", (hvp - hvp_builtin).abs().max().item())
print("max |manual − finite differences|: ", (hvp - hvp_finite).abs().max().item())
hessian_times_v = (hessian.reshape(30, 30) @ v.reshape(30)).reshape(6, 5)
print("max |manual − full Hessian · v|:   ", (hvp - hessian_times_v).abs().max().item())

# %%
# (ReLU is piecewise linear: its second derivative is zero wherever it is defined, so a ReLU net's ``H v``
# comes from the loss and the products of weights alone.)
#
# Which ops support this is a fact of the registry, :data:`custom_ops.registry.OPS`:
once = [name for name, facts in OPS.items() if not facts.double_backward]
print("backward not differentiable (once_differentiable):", once)
print("double backward:", [name for name, facts in OPS.items() if facts.double_backward])

# %%
# Batch norm, layer norm and group norm compute their backward from the saved statistics as constants and
# mark it ``once_differentiable``, as the course's closed-form ``batchnorm_backward_alt`` does. A gradient
# of their gradient (double backward, a Hessian or ``H v`` by forward over reverse, a gradient penalty,
# second-order meta-learning) is refused with an error, never computed wrong:
x_ln = torch.randn(2, 4, dtype=dtype, requires_grad=True)
(g,) = torch.autograd.grad(MF.layer_norm(x_ln, (4,)).pow(3).sum(), x_ln, create_graph=True)
try:
    g.sum().backward()
except RuntimeError as error:
    print("RuntimeError:", error)

# %%
# For second derivatives through these ops, use their built-in twins (``swap.to_builtin`` where a model was
# switched to manual ops) or differentiate the forward-mode derivative in reverse (``jacrev(jacfwd(f))``,
# reverse over forward), which differentiates their ``jvp`` instead of their backward.
#
# 5. Dropout under vmap: randomness
# ---------------------------------
# Dropout draws a mask from the random number generator. Under ``vmap`` it must be said whether the
# examples of the batch share one mask or draw their own, and by default ``vmap`` refuses to guess, for the
# manual dropout as for torch's:
ones = torch.ones(4, 8, dtype=dtype)
try:
    vmap(lambda row: MF.dropout(row, 0.5))(ones)
except RuntimeError as error:
    print("RuntimeError:", error)

# %%
# ``randomness="different"``: each example its own mask (what dropout in a batch does); kept units are
# scaled by ``1 / (1 − p)`` = 2.
torch.manual_seed(1)
print(vmap(lambda row: MF.dropout(row, 0.5), randomness="different")(ones))

# %%
# ``randomness="same"``: one mask for the whole batch.
torch.manual_seed(1)
print(vmap(lambda row: MF.dropout(row, 0.5), randomness="same")(ones))
