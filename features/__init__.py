"""Data loading, validation and feature construction for purchase propensity.

Modules
-------
tabular
    Session-table CSVs: schema, validation with row/column-exact errors, and the
    ``Preprocessor`` (log1p, standardisation, one-hot with an unseen bucket).
events
    Clickstream event logs turned into per-user features.
"""
