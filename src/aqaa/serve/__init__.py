"""Serving: answering spoken turns (CLI chat now; streaming engine, websocket server and web page to come)."""
