"""latent-traits: train one LoRA adapter per source dataset, evaluate every adapter on every
target task, and decompose the adapter x task matrix into latent traits."""

__version__ = "0.1.0"
