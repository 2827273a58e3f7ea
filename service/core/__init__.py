"""Service-wide pieces: settings."""
