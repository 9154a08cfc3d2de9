"""User-facing errors: one clear line naming the file and the problem, never a traceback."""


class PosecalInputError(Exception):
    """Bad user input (missing file, malformed JSON, invalid box...). The CLI prints it as one line."""
