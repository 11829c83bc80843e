"""The models (``workflow/rules/models.smk``): one interface over the multimodal models, the asking engine that
every model step uses, and the toy LLaVA family trained for the offline world."""
