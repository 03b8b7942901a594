"""The product gRPC service."""
