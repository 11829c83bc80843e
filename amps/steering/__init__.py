"""Steering (``workflow/rules/steering.smk``): the steering hook, the contrastive activations and the
uniform-strength sweep of the mean vector."""
