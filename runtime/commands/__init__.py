"""One module per `wse` subcommand (see runtime/cli.py for the contract). Imports here must stay JAX-free."""
