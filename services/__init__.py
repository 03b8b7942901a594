"""The five gRPC services of the shop: user, product, inventory, payment, notification."""
