"""I/O and flow: decode, scene buffering, the bounded chain, encode, and the CLI."""
