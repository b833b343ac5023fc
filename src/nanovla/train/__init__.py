"""nanovla.train."""
