"""The one exception type the CLI turns into exit code 2 and a single line on stderr."""


class AqaaInputError(Exception):
    """Bad input from a user (a file, an argument): reported without a traceback."""
