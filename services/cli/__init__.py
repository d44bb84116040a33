"""The `cascade` command: run the system, ask it, train and check the router."""
