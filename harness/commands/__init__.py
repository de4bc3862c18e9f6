"""The command line: `cli` parses, one module per command."""
