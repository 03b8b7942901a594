"""The notification gRPC service."""
