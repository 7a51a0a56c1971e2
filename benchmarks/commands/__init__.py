"""The `wse bench` and `wse claims` commands (registered in pyproject.toml; light at import: no JAX)."""
