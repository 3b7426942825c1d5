"""Any PyTorch model on the manual operators, and its weights: swapping layers (:mod:`.swap`), routing
``torch.nn.functional`` calls (:mod:`.function_mode`), pretrained backbones (:mod:`.pretrained`) and
checkpoint loading (:mod:`.checkpoint`)."""
