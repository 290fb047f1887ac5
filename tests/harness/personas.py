"""The answers of the personas several tests play (the same person, on every channel)."""

from __future__ import annotations

#: A patient with a stable chronic illness who wants to train professionals, in Occitanie.
PATIENT_TRAINER = ("patient", "chronique", "stabilise", "former", "fr", "occitanie", "aucune",
                   "aucune", "mensuel")  # fmt: skip
#: How that person asks to be contacted (health data: must never reach a log).
HOW = "Par courriel : camille@example.org, plutôt le soir"
