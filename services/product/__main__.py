"""Runs the product service alone: `python -m services.product` (on GRPC_PORT)."""

from services.server import main

if __name__ == "__main__":
    main(("product",))
