"""vramgate: size LLM serving deployments to their GPUs before Kubernetes starts them."""

__version__ = "0.1.0"
