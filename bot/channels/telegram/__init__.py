"""The Telegram channel (python-telegram-bot 22): a thin translator in front of
:class:`bot.app.conversation.ConversationService`.

:mod:`.channel` lifecycle and intake; :mod:`.apply` the per-update commit; :mod:`.handlers`
PTB updates → service → replies; :mod:`.render` HTML and buttons; :mod:`.delivery` the reply
outbox and Bot API calls; :mod:`.queues` what a queued job produces; :mod:`.intake` the checks
before recording; :mod:`.transport` polling and the webhook route; :mod:`.menu` the command
menu; :mod:`.sweeper` several instances' leftovers; :mod:`.scheduler` follow-ups;
:mod:`.compose` building it.
"""

from bot.channels.telegram.apply import MAX_APPLY_ATTEMPTS
from bot.channels.telegram.channel import TelegramChannel
from bot.channels.telegram.compose import build, running
from bot.channels.telegram.intake import update_problem
from bot.channels.telegram.render import (
    encode_choice,
    keyboard_rows,
    layout,
    node_tag,
    render,
    split_text,
)

__all__ = [
    "MAX_APPLY_ATTEMPTS",
    "TelegramChannel",
    "build",
    "encode_choice",
    "keyboard_rows",
    "layout",
    "node_tag",
    "render",
    "running",
    "split_text",
    "update_problem",
]
