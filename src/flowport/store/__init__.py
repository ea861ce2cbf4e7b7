"""The metadata store: SQLAlchemy models, Alembic migrations and repository functions.

Repository functions take a :class:`sqlalchemy.orm.Session` and never commit:
the service calling them owns the transaction.
"""
