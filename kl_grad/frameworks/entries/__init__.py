"""The catalogue's entries by group (``established``: the first eight frameworks; ``newer``: those added since;
``more``: ms-swift, marin, Liger-Kernel and TRL PR #7188);
``kl_grad.frameworks.catalogue`` assembles them into the one registry."""
