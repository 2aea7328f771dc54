"""Errors a user can act on.

The CLI prints these as one line and exits non-zero; anything else is a bug
and gets a traceback only with --debug. They live in `device` because every
stage may import `device`, and `device` imports no other stage.
"""


class UserError(Exception):
    """A problem with the user's input or environment; str() is one line saying what to do."""

    exit_code = 1


class MissingExtraError(UserError):
    """An optional dependency is missing; the message names the pip install that fixes it."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"{module} is not installed; install it with: pip install 'edgepipe[{extra}]'"
        )
        self.module = module
        self.extra = extra
