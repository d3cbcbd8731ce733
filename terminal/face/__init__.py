"""Face pay on the terminal: frame sources, the head-turn liveness check, the template
sealed for 59/DF02 and the passcode block for 59/DF0C (see checkout.py)."""
