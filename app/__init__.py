"""The operator's terminal UI (Textual): ``run_tui`` in ``app.app``; ``farm/`` never imports this package."""
