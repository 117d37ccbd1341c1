"""One module per Docker API object group."""
