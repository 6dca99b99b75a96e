"""raylessons: fast.ai lesson 3 rebuilt on Ray Train, Tune and Serve."""
__version__ = "0.1.0"
__all__ = ["__version__"]
