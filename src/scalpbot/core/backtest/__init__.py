"""The one fill model: a numba kernel over bar arrays (``nb``) and its record dtypes (``enums``)."""
