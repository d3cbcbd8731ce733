"""Channels the host routes to: the card issuer (simulated), wallets, face."""
