"""Project-wide helpers: typed configs and the CLI built from them, user-facing errors, console and progress,
the device, thread-independent arithmetic, video files."""
