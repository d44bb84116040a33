"""Generated protobuf bindings of the cascade.v1 contracts (see proto/cascade/v1/*.proto)."""
