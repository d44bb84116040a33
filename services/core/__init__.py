"""What every service shares: settings, NATS subjects and connection, errors, telemetry, lifecycle."""
