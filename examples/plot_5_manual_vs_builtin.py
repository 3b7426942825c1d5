"""
Manual vs built-in: numerics, speed, saved memory
=================================================

How close are the hand-written operators to torch's own, and what do they cost? For a handful of ops at
small CS231n shapes, this page measures

1. **numerics**: the float32 outputs and gradients of the manual op *and* of the built-in, each against the
   same computation in float64 (the built-in in float64 is the reference);
2. **speed**: forward+backward time of each, interleaved in one process (``torch.utils.benchmark``);
3. **memory**: the bytes each saves for its backward (saved-tensor hooks,
   :func:`torch_cs231n.tools.memory.saved_memory`).

It runs in well under a minute with short timings. **The full version** is the benchmark, every op and
sandwich layer at CS231n and ResNet-18 shapes plus whole training steps (minutes; its latest run is on
:doc:`the benchmark page </benchmark>`)::

    cs231n bench --sizes cs231n,resnet --threads 1 --repeats 3 --min-run-time 0.15
"""

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch.utils import benchmark

import custom_ops.functional as MF
from torch_cs231n.tools.memory import saved_memory

torch.manual_seed(0)
torch.set_num_threads(1)

# %%
# The ops and their inputs
# ------------------------
# Each entry: the manual op, its built-in twin, a function making the inputs in a dtype (the same values
# in float32 and float64), and the keyword arguments both take.


def make(*shapes, scale=1.0):
    base = [scale * torch.randn(shape, dtype=torch.float64) for shape in shapes]
    return lambda dtype: [t.to(dtype).requires_grad_() for t in base]


CASES = {
    "linear": (MF.linear, F.linear, make((128, 3072), (100, 3072), (100,), scale=0.05), {}),
    "conv2d": (MF.conv2d, F.conv2d, make((16, 3, 32, 32), (32, 3, 5, 5), (32,)), {"padding": 2}),
    "max_pool2d": (MF.max_pool2d, F.max_pool2d, make((16, 32, 16, 16)), {"kernel_size": 2}),
    "relu": (MF.relu, F.relu, make((128, 3072)), {}),
    "batch_norm": (
        lambda x, w, b: MF.batch_norm(x, None, None, w, b, training=True),
        lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
        make((64, 32, 16, 16), (32,), (32,)),
        {},
    ),
    "layer_norm": (
        lambda x, w, b: MF.layer_norm(x, (100,), w, b),
        lambda x, w, b: F.layer_norm(x, (100,), w, b),
        make((128, 100), (100,), (100,)),
        {},
    ),
    "softmax": (MF.softmax, F.softmax, make((128, 1000), scale=5.0), {"dim": 1}),
    "gelu": (MF.gelu, F.gelu, make((128, 3072)), {}),
}


def run(fn, inputs, kwargs, dout):
    """Output and input gradients of ``fn`` with upstream gradient ``dout``."""
    out = fn(*inputs, **kwargs)
    grads = torch.autograd.grad(out, inputs, dout.to(out.dtype))
    return [out, *grads]


def error(values, reference):
    """The largest error of any output or gradient, relative to that tensor's largest reference value."""
    return max(((v.double() - r).abs().max() / r.abs().max()).item() for v, r in zip(values, reference))


# %%
# Numerics against float64
# ------------------------
rows = []
for name, (manual, builtin, inputs, kwargs) in CASES.items():
    out64 = builtin(*inputs(torch.float64), **kwargs)
    dout = torch.randn_like(out64)
    reference = run(builtin, inputs(torch.float64), kwargs, dout)
    manual32 = error(run(manual, inputs(torch.float32), kwargs, dout), reference)
    builtin32 = error(run(builtin, inputs(torch.float32), kwargs, dout), reference)
    manual64 = error(run(manual, inputs(torch.float64), kwargs, dout), reference)
    rows.append((name, manual32, builtin32, manual64))
print(f"{'op':12} {'manual fp32':>12} {'built-in fp32':>14} {'manual fp64':>12}")
for name, m32, b32, m64 in rows:
    print(f"{name:12} {m32:12.1e} {b32:14.1e} {m64:12.1e}")

# %%
# Both float32 implementations sit at the same distance from the float64 result (a few units of float32's
# rounding, about 6e-8 relative, times the length of the sums); in float64 the manual ops agree with the
# built-ins to float64's rounding.
fig, ax = plt.subplots(figsize=(7, 3))
positions = torch.arange(len(rows)).float()
ax.bar(positions - 0.2, [r[1] for r in rows], width=0.4, label="manual, float32")
ax.bar(positions + 0.2, [r[2] for r in rows], width=0.4, label="built-in, float32")
ax.set_xticks(positions, [r[0] for r in rows], rotation=30)
ax.set_yscale("log")
ax.set_ylabel("relative error vs float64")
ax.legend()
fig.tight_layout()
plt.show()

# %%
# Speed: forward + backward
# -------------------------
# Short timings on one thread (``min_run_time`` 0.1 s each), manual and built-in interleaved; expect noise
# of several percent on a busy machine. These are the eager reference formulas (fusion is off by default);
# the benchmark runs the memory-bound ops as compiled fused kernels (``CS231N_FUSED=1``, see
# :doc:`the speed guide </guide/speed>`) and takes the median of longer, repeated runs.
print(f"{'op':12} {'manual ms':>10} {'built-in ms':>12} {'ratio':>7}")
for name, (manual, builtin, inputs, kwargs) in CASES.items():
    times = {}
    for label, fn in (("manual", manual), ("builtin", builtin)):
        args = inputs(torch.float32)
        dout = torch.randn_like(fn(*args, **kwargs))
        timer = benchmark.Timer(
            "torch.autograd.grad(fn(*args, **kwargs), args, dout)",
            globals={"torch": torch, "fn": fn, "args": args, "kwargs": kwargs, "dout": dout},
        )
        times[label] = timer.blocked_autorange(min_run_time=0.1).median
    print(
        f"{name:12} {times['manual'] * 1e3:10.3f} {times['builtin'] * 1e3:12.3f} "
        f"{times['manual'] / times['builtin']:6.2f}x"
    )

# %%
# Saved memory
# ------------
# What each keeps for its backward: dropout keeps a boolean mask (a quarter of a float32 mask), max
# pooling only the window's argmax indices, batch norm the centred input, as the built-in does.
SAVED = {
    "dropout": (lambda x: MF.dropout(x, 0.5), lambda x: F.dropout(x, 0.5), (64, 32, 16, 16)),
    "max_pool2d": (lambda x: MF.max_pool2d(x, 2), lambda x: F.max_pool2d(x, 2), (64, 32, 16, 16)),
    "relu": (MF.relu, F.relu, (64, 32, 16, 16)),
    "softmax": (lambda x: MF.softmax(x, 1), lambda x: F.softmax(x, 1), (128, 1000)),
}
print(f"{'op':12} {'manual KiB':>11} {'built-in KiB':>13}")
for name, (manual, builtin, shape) in SAVED.items():
    x = torch.randn(shape, requires_grad=True)
    manual_bytes = saved_memory(manual, [x]).bytes
    builtin_bytes = saved_memory(builtin, [x]).bytes
    print(f"{name:12} {manual_bytes / 1024:11.1f} {builtin_bytes / 1024:13.1f}")
