"""nanovla.models.vision."""
