"""The application layer, once for every channel: features, engines, reload; no I/O library."""
