"""The kinds of :class:`~bot.engine.replies.Event` the engine emits, as constants.

Integrations (webhooks, statistics, follow-ups) match on these names: they are a public
contract, so every layer imports them from here instead of spelling them out.
"""

from __future__ import annotations

from typing import Final

#: The person reached a recommendation (anonymous: roles, territory, context).
CONVERSATION_COMPLETED: Final = "conversation.completed"
#: The person consented to be put in touch with an establishment.
CONTACT_REQUESTED: Final = "contact.requested"
#: A barometer was answered to the end (scores only).
BAROMETER_COMPLETED: Final = "barometer.completed"
#: The person asked to keep their barometer answers to compare later.
BAROMETER_KEEP: Final = "barometer.keep"
#: The person asked for the comparison with their group.
BAROMETER_COMPARE: Final = "barometer.compare"
#: The person accepted a follow-up message later.
FOLLOWUP_REQUESTED: Final = "followup.requested"
#: The person answered a follow-up message.
FOLLOWUP_ANSWERED: Final = "followup.answered"

#: The events a webhook may carry (the others stay inside the deployment).
WEBHOOK_EVENTS: Final = (CONTACT_REQUESTED, CONVERSATION_COMPLETED)
ALL: Final = (
    CONVERSATION_COMPLETED,
    CONTACT_REQUESTED,
    BAROMETER_COMPLETED,
    BAROMETER_KEEP,
    BAROMETER_COMPARE,
    FOLLOWUP_REQUESTED,
    FOLLOWUP_ANSWERED,
)
