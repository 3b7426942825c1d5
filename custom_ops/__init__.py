"""Manual CS231n operators: autograd Functions with hand-written backward passes."""
