"""Exceptions raised by lfmrt."""


class LoadError(Exception):
    """A model file, tensor or config field is missing, malformed or inconsistent.

    The message always names the offending file, tensor or field, so a user can find the problem
    without a debugger. The C++ core raises the same type (the bindings translate it).
    """
