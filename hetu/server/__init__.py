"""The websocket server (gateway) and its message pipeline."""
