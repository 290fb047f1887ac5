"""The channels, which only translate: terminal, scripted conversations, Telegram, HTTP and
the web chat."""
