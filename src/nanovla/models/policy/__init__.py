"""nanovla.models.policy."""
