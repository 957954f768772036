"""The cbacheck subcommands: run, demo and cert (the sandbox command lives with the sandbox)."""
