"""AMPS and the methods it is compared with (``workflow/rules/method.smk``): the steering modules and their
training, each method's validation choice, the steered evaluation on the test split, and the ablations."""
