"""Notification channels: console (the embedded default), AWS SNS and apprise URLs, fanned out with retries."""
