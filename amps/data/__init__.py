"""The benchmark (``workflow/rules/data.smk``): the MC² prompt protocol and answer parser, the offline conflict
world and its training corpus, MC² records, and the prepared benchmark folder with its splits."""
