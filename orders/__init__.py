"""The order read model: one row per order, written by the PlaceOrder workflow (through an
activity) on every status change, read by the API once the workflow has finished."""
