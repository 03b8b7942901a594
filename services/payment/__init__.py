"""The payment gRPC service."""
