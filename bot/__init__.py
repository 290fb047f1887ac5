"""Passerelle: a rule-based French conversational bot; the layers below point inward, to the
engine."""
