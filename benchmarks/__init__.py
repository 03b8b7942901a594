"""`make bench`: checkout throughput through the REST API next to the engine's limit."""
