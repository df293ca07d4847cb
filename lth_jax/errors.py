"""The one exception type for mistakes in what a user asked for.

Validation code raises :class:`UserError` for a bad flag or config value, a
workdir that holds another run, a dataset that is not prepared, a ticket that
does not fit a model. The experiment scripts print it as one line; any other
exception is a bug (or an environment failure) and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(ValueError):
    """A mistake in the input: the message names the bad value and what is allowed.

    A subclass of ``ValueError``, so ``except ValueError`` still catches it.
    """
