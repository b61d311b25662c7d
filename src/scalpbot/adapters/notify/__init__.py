"""Notification channels: console (the embedded default); SNS and apprise join them with the monitor job."""
