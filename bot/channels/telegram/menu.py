"""The command menu Telegram shows (``setMyCommands``): the engine's commands, its modes'
(the barometer, follow-ups), then the channel's own, each described by the knowledge base.

Its own module so that the menu's order and its descriptions are read in one place.
"""

from __future__ import annotations

from telegram import BotCommand

from bot.engine.flow import Engine
from bot.knowledge.model import COMMANDS

#: Commands of the channel itself, after the engine's and its modes' in the menu.
OWN_COMMANDS = ("mesdonnees", "oubli")


def command_names(engine: Engine) -> list[str]:
    """Every command a person can type, in the menu's order (one without a description in
    the knowledge base is left out)."""
    names = [*COMMANDS, *engine.modes, *OWN_COMMANDS]
    return [name for name in names if f"telegram_cmd_{name}" in engine.kb.messages]


def bot_commands(engine: Engine) -> list[BotCommand]:
    """The menu as the Bot API takes it."""
    session = engine.new_session()
    return [
        BotCommand(name, engine.msg(f"telegram_cmd_{name}", session))
        for name in command_names(engine)
    ]
