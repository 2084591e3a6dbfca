"""One module per command of `event-processor`; `operations.cli.app` registers them."""
