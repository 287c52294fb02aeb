"""The `rankbridge` command line (`main`): one module per command."""
