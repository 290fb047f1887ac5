"""What the tests (and ``bench/``) share, so that no test module imports another: the fake
Telegram Bot API, ``serve()`` for real servers on loopback, the network guard, race-free ports,
waiting for signals, throwaway PostgreSQL clusters, and the helpers each channel's tests use
(``telegram``, ``webhooks``, ``api``) with the personas and phrases they play."""
