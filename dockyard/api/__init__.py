"""HTTP adapter: Docker Engine API requests in, domain calls, Docker JSON out."""
