"""acquirer package."""
