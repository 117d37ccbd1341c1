"""OCI runtime driver: spec building, the runc CLI, and conmon as per-container monitor."""
