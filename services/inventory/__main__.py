"""Runs the inventory service alone: `python -m services.inventory` (on GRPC_PORT)."""

from services.server import main

if __name__ == "__main__":
    main(("inventory",))
