"""The REST API: FastAPI in front of the gRPC services and the PlaceOrder workflows."""
