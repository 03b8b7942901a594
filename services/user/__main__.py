"""Runs the user service alone: `python -m services.user` (on GRPC_PORT)."""

from services.server import main

if __name__ == "__main__":
    main(("user",))
