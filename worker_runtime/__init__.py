"""jobqueue worker runtime."""
