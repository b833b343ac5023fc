"""nanovla.eval."""
