"""Adapters to the outside world that are not channels: signed webhooks, charts."""
