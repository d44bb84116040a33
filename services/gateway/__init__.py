"""The gateway: the gRPC server clients call; it orchestrates route -> tier -> (escalate) -> outcome."""
