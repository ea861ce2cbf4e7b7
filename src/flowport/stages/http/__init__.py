"""HTTP stages: the HTTP API origin (paginated JSON APIs with basic, bearer, API key or Hawk auth)."""
