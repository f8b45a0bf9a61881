"""The error of a synthetic data request that cannot be met (bad count, seed, table or option)."""

from fairseq_goodviews.errors import GoodviewsError


class SyntheticDataError(GoodviewsError, ValueError):
    """A request for synthetic data that cannot be met; the message names the option or file."""
