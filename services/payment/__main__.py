"""Runs the payment service alone: `python -m services.payment` (on GRPC_PORT)."""

from services.server import main

if __name__ == "__main__":
    main(("payment",))
