"""One module per `saekit` verb; see saekit/cli.py."""
