"""nanovla.nn."""
