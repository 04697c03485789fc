"""The TUI tier: Pilot tests against a real Redis and screenshots of a fixed busy farm."""
