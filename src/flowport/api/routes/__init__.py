"""One router per concept of the API v4; each route parses, calls one service function, answers."""
