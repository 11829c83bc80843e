"""The Modality Contribution Ratio (``workflow/rules/mcr.smk``): sharded estimation and the gathered tables."""
