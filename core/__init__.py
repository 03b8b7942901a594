"""Pieces shared by every process: settings, the types that cross boundaries, errors."""
