"""amps: Adaptive Modality Preference Steering for multimodal LLMs."""

__version__ = "0.1.0"
