"""persona-engine: persona-driven synthetic data at scale."""

__version__ = "0.1.0"
