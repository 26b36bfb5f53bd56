"""Errors of the analysis stage: user-facing (LatentTraitsError), each message names the fix."""

from latent_traits.errors import LatentTraitsError


class AnalysisError(LatentTraitsError, ValueError):
    """A problem with the records or the analysis config, stated with its fix."""


class NoRecordsError(AnalysisError):
    pass


class RecordConflictError(AnalysisError):
    """Records that cannot share one matrix (different models, different task versions)."""


class MissingCellsError(AnalysisError):
    pass
