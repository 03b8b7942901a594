"""The payload codec server: the Web UI and the CLI read the shop's encrypted payloads here."""
