"""Tables, figures and report pages (``workflow/rules/report.smk``). Nothing here imports torch or transformers."""
