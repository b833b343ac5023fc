"""nanovla.labs."""
