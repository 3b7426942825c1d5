"""Tools built on the manual operators, grouped by role (imports go one way: ``data`` and ``nets`` need
only :mod:`custom_ops`; ``interop``, ``tools`` and ``experiments`` build on them):

- :mod:`torch_cs231n.data`: the CIFAR-10 arrays (loading, splits, checks);
- :mod:`torch_cs231n.nets`: the CS231n networks, initialisation, update rules, sandwich layers;
- :mod:`torch_cs231n.interop`: any torchvision/timm model on the manual ops, pretrained weights, checkpoints;
- :mod:`torch_cs231n.tools`: benchmark, gradient check, summary, memory, coverage, plotting;
- :mod:`torch_cs231n.experiments`: the course's experiments as commands with figures.
"""
