"""`python -m services`: the five gRPC services in one process on GRPC_HOST:GRPC_PORT."""

from services.server import main

if __name__ == "__main__":
    main()
