"""The web process: the one ASGI app (app.py), the routes it mounts, and what guards them."""
