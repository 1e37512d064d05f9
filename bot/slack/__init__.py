"""Slack itself: the port the routes post through, delivery and retries, request guards, the audit log."""
