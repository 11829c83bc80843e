"""The baseline evaluation (``workflow/rules/baseline.smk``): every test record under each baseline condition."""
