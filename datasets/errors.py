"""Errors of the data layer (bad or missing data a user can fix)."""
from core.errors import UserError


class DatasetError(UserError, ValueError):
    """Data that cannot be used as asked (a view kind a data set does not offer, a bad file)."""


class DatasetNotFoundError(UserError, FileNotFoundError):
    """A data set folder or file that is not where the arguments say."""
