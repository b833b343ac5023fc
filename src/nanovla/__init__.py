"""nanovla: Vision-Language-Action policies trained from scratch on a laptop CPU, offline."""

__version__ = "0.1.0"
