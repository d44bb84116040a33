"""prompt-cascade services: gateway, router, tier workers, outcomes, the client SDK and the CLI."""
