"""The model registry: routers and answer scorers published to a JetStream object store, the changes
operators make to the active versions (with their history and ModelEvents), and the services' followers."""
