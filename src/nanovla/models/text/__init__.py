"""nanovla.models.text."""
