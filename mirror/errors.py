"""Errors that carry one sentence a chat user can read.

Every failure that reaches a person goes through these classes, so adapters and the CLI can
show ``str(error)`` verbatim without ever leaking a traceback or a credential.
"""


class MirrorError(Exception):
    """Base class: ``str(self)`` is a complete, human sentence."""


class InvalidReference(MirrorError):
    """The text is not an image reference ``docker pull`` would accept."""


class InvalidPlatform(MirrorError):
    """The text is not ``os/arch[/variant]`` nor ``all``."""


class NameConflict(MirrorError):
    """Two different sources would land on the same target."""


class EngineUnavailable(MirrorError):
    """The engine cannot work at all right now (e.g. the Docker daemon does not answer)."""


class CopyFailed(MirrorError):
    """A copy started but did not finish; the sentence says why.

    ``transient`` marks faults worth retrying (network, rate limits), as skopeo does.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class Cancelled(MirrorError):
    """Somebody cancelled the job."""
