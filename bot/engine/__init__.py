"""The pure core: ``(session, input) -> (replies, new session)``; no channel, storage or network
import, only the knowledge model."""
