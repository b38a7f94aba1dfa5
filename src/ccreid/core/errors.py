"""The one exception type a user sees: a clear message, a non-zero exit, no traceback."""


class CCReIDError(Exception):
    """Bad input or configuration. The message names the file, key or value and what to do."""


def registered(registry: dict, name: str, key: str, what: str):
    """registry[name], or an error naming the params.yaml key and every valid name."""
    if name not in registry:
        raise CCReIDError(f"{key}: unknown {what} {name!r}; valid {what}s: {', '.join(registry)}")
    return registry[name]
