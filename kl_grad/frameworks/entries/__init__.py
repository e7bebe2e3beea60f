"""The catalogue's entries by group (``established``: the first eight frameworks; ``newer``: those added since);
``kl_grad.frameworks.catalogue`` assembles them into the one registry."""
