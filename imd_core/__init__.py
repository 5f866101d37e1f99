"""IMD Studio core: the IMD model, media decoding, datasets, training and inference.

Plain Python + PyTorch. This package never imports Qt (a test enforces it).
"""

__version__ = "0.1.0"
