"""Typed errors: every user mistake surfaces as one of these, never as a bare traceback."""

from __future__ import annotations


class GnnrlError(Exception):
    """Base class for errors caused by user input (bad path, wrong model, bad option).

    The CLI prints the message and exits with code 2; the Python API lets it propagate.
    """


class DataError(GnnrlError):
    """A dataset is missing, corrupt or in an unknown format."""


class WeightsError(GnnrlError):
    """A checkpoint is missing, unreadable, unsafe to unpickle, or does not fit the model."""


class ModelError(GnnrlError):
    """An unknown model name or invalid model arguments."""
