"""
Layers by hand: affine, ReLU, the losses, gradient checks, a two-layer net
==========================================================================

The first steps of CS231n assignment 2 (``FullyConnectedNets.ipynb``), on the project's operators. Each
layer is a ``torch.autograd.Function`` whose backward is written by hand in ``custom_ops/``; here we check
them the way the assignment does: the forward against the assignment's expected numbers, the backward
against centred finite differences, and a small two-layer net against the assignment's loss.

Everything runs in float64, as the assignment's numpy code does. This page runs in seconds; there is no
longer version.
"""

import torch

import custom_ops.functional as MF
from torch_cs231n.tools.gradcheck import numeric_gradient, rel_error

torch.manual_seed(0)
dtype = torch.float64

# %%
# Affine layer: forward
# ---------------------
# The assignment flattens each example of ``x`` ``(N, d_1, ..., d_k)`` to a row of ``D`` values and computes
# ``x W + b``. torch (and ``custom_ops.functional.linear``) store the weight as ``(out, in)``, so the
# assignment's ``w`` ``(D, M)`` is our ``weight.T``.
num_inputs, input_shape, output_dim = 2, (4, 5, 6), 3
input_size = num_inputs * 4 * 5 * 6
weight_size = output_dim * 4 * 5 * 6
x = torch.linspace(-0.1, 0.5, input_size, dtype=dtype).reshape(num_inputs, *input_shape)
w = torch.linspace(-0.2, 0.3, weight_size, dtype=dtype).reshape(4 * 5 * 6, output_dim)
b = torch.linspace(-0.3, 0.1, output_dim, dtype=dtype)

out = MF.linear(x.reshape(num_inputs, -1), w.T, b)
correct_out = torch.tensor(
    [[1.49834967, 1.70660132, 1.91485297], [3.25553199, 3.5141327, 3.77273342]], dtype=dtype
)
print(out)
print("relative error (the assignment: about 1e-9 or less):", rel_error(out, correct_out))

# %%
# Affine layer: backward, checked numerically
# -------------------------------------------
# ``numeric_gradient`` is the course's ``eval_numerical_gradient_array``: centred differences
# ``(f(x + h) - f(x - h)) / 2h`` of ``sum(out * dout)``, one element at a time. The analytic gradient is
# the hand-written backward of ``custom_ops/linear.py`` (``dx = dout W``, ``dW = doutᵀ x``, ``db = Σ dout``),
# reached through ``autograd``.
x = torch.randn(10, 6, dtype=dtype, requires_grad=True)
weight = torch.randn(5, 6, dtype=dtype, requires_grad=True)
bias = torch.randn(5, dtype=dtype, requires_grad=True)
dout = torch.randn(10, 5, dtype=dtype)

MF.linear(x, weight, bias).backward(dout)
for name, tensor in (("dx", x), ("dw", weight), ("db", bias)):
    with torch.no_grad():
        numeric = numeric_gradient(lambda: float((MF.linear(x, weight, bias) * dout).sum()), tensor)
    print(f"{name} relative error: {rel_error(tensor.grad, numeric):.2e}")

# %%
# ReLU: forward and backward
# --------------------------
out = MF.relu(torch.linspace(-0.5, 0.5, 12, dtype=dtype).reshape(3, 4))
correct_out = torch.tensor(
    [
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.04545455, 0.13636364],
        [0.22727273, 0.31818182, 0.40909091, 0.5],
    ],
    dtype=dtype,
)
print("relu forward relative error (the assignment: below 1e-7):", rel_error(out, correct_out))

x = torch.randn(10, 10, dtype=dtype, requires_grad=True)
dout = torch.randn(10, 10, dtype=dtype)
MF.relu(x).backward(dout)
with torch.no_grad():
    numeric = numeric_gradient(lambda: float((MF.relu(x) * dout).sum()), x)
print(f"relu dx relative error: {rel_error(x.grad, numeric):.2e}")

# %%
# The losses: SVM and softmax
# ---------------------------
# With small random scores every margin is about 1, so the SVM loss of ``C`` classes is about ``C - 1``;
# every class is about equally likely, so the softmax loss is about ``log C``.
num_classes, num_inputs = 10, 50
scores = (0.001 * torch.randn(num_inputs, num_classes, dtype=dtype)).requires_grad_()
y = torch.randint(num_classes, (num_inputs,))

for name, loss_fn, expected in (
    ("svm_loss", MF.svm_loss, "about 9"),
    ("softmax_loss", MF.softmax_loss, "about 2.3"),
):
    scores.grad = None
    loss = loss_fn(scores, y)
    loss.backward()
    with torch.no_grad():
        numeric = numeric_gradient(lambda fn=loss_fn: float(fn(scores, y)), scores)
    print(
        f"{name}: loss {loss.item():.4f} ({expected}), "
        f"dscores relative error {rel_error(scores.grad, numeric):.2e}"
    )

# %%
# ``torch.autograd.gradcheck`` does the same in one call
# -------------------------------------------------------
# It compares every entry of the Jacobian the backward computes with finite differences. The project's
# tests run it (and ``gradgradcheck`` where the backward is itself differentiable) on every registry case.
inputs = (
    torch.randn(4, 6, dtype=dtype, requires_grad=True),
    torch.randn(3, 6, dtype=dtype, requires_grad=True),
    torch.randn(3, dtype=dtype, requires_grad=True),
)
print("gradcheck linear:", torch.autograd.gradcheck(MF.linear, inputs))
print("gradgradcheck linear:", torch.autograd.gradgradcheck(MF.linear, inputs))

# %%
# A two-layer net with the assignment's numbers
# ---------------------------------------------
# ``TwoLayerNet`` is ``affine - relu - affine - softmax``. The assignment sets its parameters to
# ``linspace`` values and expects particular scores and losses; ``build_fc_net(hidden_dims=[H])`` builds the
# same net from the manual layers.
from torch_cs231n.nets.models import build_fc_net  # noqa: E402

N, D, H, C = 3, 5, 50, 7
net = build_fc_net([H], input_dim=D, num_classes=C, ops="manual").to(dtype)
print(net)

with torch.no_grad():
    net.fc1.weight.copy_(torch.linspace(-0.7, 0.3, D * H, dtype=dtype).reshape(D, H).T)
    net.fc1.bias.copy_(torch.linspace(-0.1, 0.9, H, dtype=dtype))
    net.fc2.weight.copy_(torch.linspace(-0.3, 0.4, H * C, dtype=dtype).reshape(H, C).T)
    net.fc2.bias.copy_(torch.linspace(-0.9, 0.1, C, dtype=dtype))
X = torch.linspace(-5.5, 4.5, N * D, dtype=dtype).reshape(D, N).T
y = torch.tensor([0, 5, 1])

scores = net(X)
correct_scores = torch.tensor(
    [
        [11.53165108, 12.2917344, 13.05181771, 13.81190102, 14.57198434, 15.33206765, 16.09215096],
        [12.05769098, 12.74614105, 13.43459113, 14.1230412, 14.81149128, 15.49994135, 16.18839143],
        [12.58373087, 13.20054771, 13.81736455, 14.43418138, 15.05099822, 15.66781506, 16.2846319],
    ],
    dtype=dtype,
)
print("scores relative error (the assignment expects < 1e-6):", rel_error(scores, correct_scores))


def loss(reg: float) -> torch.Tensor:
    """The assignment's loss: softmax data loss plus ``0.5 reg`` times the squared weights (not biases)."""
    weights = net.fc1.weight.square().sum() + net.fc2.weight.square().sum()
    return MF.softmax_loss(net(X), y) + 0.5 * reg * weights


for reg, correct in ((0.0, 3.4702243556), (1.0, 26.5948426952)):
    value = loss(reg)
    print(
        f"reg {reg}: loss {value.item():.10f}, the assignment's {correct}, "
        f"error {abs(value.item() - correct):.1e}"
    )

# %%
# And every parameter's gradient against finite differences, as the assignment's last check does:
for reg in (0.0, 0.7):
    net.zero_grad()
    loss(reg).backward()
    for name, param in net.named_parameters():
        with torch.no_grad():
            numeric = numeric_gradient(lambda r=reg: float(loss(r)), param)
        print(f"reg {reg} {name}: relative error {rel_error(param.grad, numeric):.2e}")
