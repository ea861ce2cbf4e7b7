"""File origins and destinations: CSV, JSON and Parquet."""
