"""The command line: commands, shared options, the error edge, rich rendering, pictures."""
