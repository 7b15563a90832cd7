"""raysum: Ray-distributed fine-tuning, tuning and ensembles for dialogue summarization.

Importing the package is cheap: heavy or optional libraries (ray.tune, optuna,
deepspeed, bitsandbytes, torch) are imported where they are used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
