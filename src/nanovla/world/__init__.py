"""nanovla.world."""
