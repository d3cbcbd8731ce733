"""The cashier's terminal UI (Textual): keyboard first, never blocked on I/O."""
