"""The one exception type landform raises for bad input; the CLI prints it as a single line."""


class LandformError(ValueError):
    """Bad input or state that a user can fix; the message says how, in one line."""
