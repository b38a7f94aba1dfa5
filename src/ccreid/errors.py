"""The one exception type a user sees: a clear message, a non-zero exit, no traceback."""


class CCReIDError(Exception):
    """Bad input or configuration. The message names the file, key or value and what to do."""
