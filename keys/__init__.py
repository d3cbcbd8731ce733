"""keys/: the crypto core. Pure computation: primitives at the bottom, key management above."""
