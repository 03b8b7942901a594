"""Runs the notification service alone: `python -m services.notification` (on GRPC_PORT)."""

from services.server import main

if __name__ == "__main__":
    main(("notification",))
