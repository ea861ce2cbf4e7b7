"""The web UI: served by ``flowport server`` at ``/``, over the same users, roles and API as everything else.

The pages are static files (no Node.js to install or run): the browser
signs in with a session cookie (:mod:`flowport.services.sessions`) and
calls the REST API v4 with it, sending the CSRF token on every change.
"""

from flowport.ui.routes import attach

__all__ = ["attach"]
