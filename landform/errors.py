"""The one exception type landform raises for bad input; the CLI prints it as a single line."""


class LandformError(ValueError):
    """Bad input or state that a user can fix; the message says how, in one line."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type's name if it has none): what a one-line error shows."""
    text = str(error).strip()
    return text.splitlines()[0].strip() if text else type(error).__name__
