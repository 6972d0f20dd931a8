"""Exceptions raised by lfmrt."""


class LoadError(Exception):
    """A model file, tensor or config field is missing, malformed or inconsistent.

    The message always names the offending file, tensor or field, so a user can find the problem
    without a debugger. The C++ core raises the same type (the bindings translate it).
    """


class ConstraintError(RuntimeError):
    """Constrained decoding cannot go on: the constraint allows no next token, or ``logit_bias``
    took away every token it allows. Raised instead of picking a token the constraint forbids.

    ``Model.generate`` and friends raise it; a ``Scheduler`` request that hits it finishes with
    ``finish_reason == "error"`` and the exception in ``Request.error``, the others unaffected.
    The C++ sampler raises the same type (the bindings translate it).
    """
