"""Durable workflows: PlaceOrder (the order's whole life) and CancelOrder."""
