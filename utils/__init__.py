"""Project-wide helpers: user-facing errors, CLI wrapper, console and progress."""
