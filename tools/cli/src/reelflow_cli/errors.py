"""What can go wrong, each with the exit code a script can test."""

from __future__ import annotations

#: exit codes; 2 is also what a wrong option or argument exits with (click's usage error)
EXIT_FAILED_CLIPS = 1
EXIT_BAD_ARGUMENT = 2
EXIT_UNREACHABLE = 3
EXIT_UNAUTHORIZED = 4
EXIT_NOT_FOUND = 5
EXIT_SERVER_ERROR = 6
EXIT_LIMIT = 7
EXIT_TRY_LATER = 8
#: stopped with Ctrl-C (SIGINT): 128 + 2, as a shell says of a program SIGINT ended
EXIT_INTERRUPTED = 130
#: the reader of the output went away (``reelflow list | head -1``): nothing more is printed,
#: and the exit status is the one a shell gives a program SIGPIPE ended (128 + 13), as
#: git's and coreutils' are; not 1, which says clips failed
EXIT_BROKEN_PIPE = 141


class CliError(Exception):
    """An error to print as one clear message (no traceback) and exit with ``exit_code``.

    With ``--json`` it is printed as :attr:`as_json`: the API's problem+json when the API
    answered one (``problem``), else an object of the same shape, ``title`` and ``detail``.
    """

    exit_code = EXIT_SERVER_ERROR
    #: the ``title`` of the JSON a local error is printed as with ``--json``
    title = "Error"

    #: the API's problem+json, when the error is the API's answer (set by the client)
    problem: dict[str, object] | None = None

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def as_json(self) -> dict[str, object]:
        return self.problem or {"title": self.title, "detail": str(self)}


class BadArgument(CliError):
    """The API found the request invalid (422), or the command line makes no sense."""

    exit_code = EXIT_BAD_ARGUMENT
    title = "Bad argument"


class LimitRefused(CliError):
    """The tenant's limits refuse this: a budget (402), or a model or scene count (403)."""

    exit_code = EXIT_LIMIT
    title = "Refused by a limit"


class TryLater(CliError):
    """Refused for now, not for good: clips in flight, requests, a busy server (429, 503)."""

    exit_code = EXIT_TRY_LATER
    title = "Try again later"


class Unreachable(CliError):
    """No answer from the server at the configured URL."""

    exit_code = EXIT_UNREACHABLE
    title = "Server unreachable"


class Unauthorized(CliError):
    """No API key, or one the server does not accept."""

    exit_code = EXIT_UNAUTHORIZED
    title = "Not authorized"


class NotFound(CliError):
    """No such project for this key."""

    exit_code = EXIT_NOT_FOUND
    title = "Not found"
