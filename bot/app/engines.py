"""Factories shared by every channel, so all of them offer the same features."""

from __future__ import annotations

from collections.abc import Sequence

from bot.engine.barometer import BarometerMode
from bot.engine.flow import Engine, Mode
from bot.engine.followup import DEFAULT_DAYS, FollowUpMode
from bot.engine.places import Receiver
from bot.knowledge.model import KnowledgeBase


def default_modes(
    kb: KnowledgeBase, *, followup: bool = False, followup_days: int = DEFAULT_DAYS
) -> tuple[Mode, ...]:
    """The side conversations a channel offers: the barometer when its file is loaded, and the
    follow-up only for channels that can write first (Telegram), i.e. ``followup=True``."""
    modes: list[Mode] = []
    if kb.barometer is not None and kb.barometer.criteria():
        modes.append(BarometerMode())
    if followup:
        modes.append(FollowUpMode(followup_days))
    return tuple(modes)


def build_engine(
    kb: KnowledgeBase,
    *,
    followup: bool = False,
    followup_days: int = DEFAULT_DAYS,
    receivers: Sequence[Receiver] = (),
) -> Engine:
    """The engine with the default modes: use this rather than ``Engine(kb)`` in channels.

    ``receivers``: the establishments whose webhooks this channel routes events to (see
    ``bot.adapters.webhooks.route``); only then may the bot offer to put the person in touch."""
    modes = default_modes(kb, followup=followup, followup_days=followup_days)
    return Engine(kb, modes=modes, receivers=receivers)
