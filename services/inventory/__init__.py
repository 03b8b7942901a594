"""The inventory gRPC service."""
