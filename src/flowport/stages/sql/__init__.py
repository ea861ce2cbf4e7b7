"""SQL database stages: query and table origins, the table destination and the SQL executor.

They work with every SQL connection vendor (PostgreSQL, Redshift, MariaDB/MySQL,
SQLite, DuckDB). Identifiers are always quoted for the vendor, parameters are
always bound by the driver, and table loads go through a staging table that
becomes visible in one transaction when the run commits.
"""
