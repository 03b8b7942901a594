"""The user gRPC service."""
