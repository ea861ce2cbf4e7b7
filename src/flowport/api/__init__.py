"""The REST API v4 of a Flowport instance (FastAPI): :func:`flowport.api.app.create_app`."""
