"""A complete client of the Passerelle conversation API, standard library only (Python 3.11+).

It plays a conversation to its recommendation, asks to be put in touch (the contact-request
flow: consent, how to reach the person, confirmation), reads back what is stored, then erases
it. Run it against a server of yours:

    export PASSERELLE_URL=http://127.0.0.1:8080   # where `passerelle serve` listens
    export PASSERELLE_KEY=psk_…                   # `passerelle keys create ÉTABLISSEMENT`
    python examples/client.py patient chronique stabilise former fr occitanie aucune aucune mensuel

Each argument is the ``id`` of a choice to pick, in order (run it with no argument to pick the
first choice each time). Every answer is JSON; errors are ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

HOW_TO_REACH = "Par courriel : camille@example.org, plutôt le soir"


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code = status, code


class Passerelle:
    def __init__(self, base_url: str, key: str) -> None:
        self.api = base_url.rstrip("/") + "/api/v1"
        self.key = key

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request; waits and retries once when rate-limited (429 + Retry-After)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.api + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for attempt in range(2):
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    raw = response.read()
                    return json.loads(raw) if raw else None
            except urllib.error.HTTPError as error:
                payload = json.loads(error.read() or b"{}").get("error", {})
                if error.code == 429 and attempt == 0:
                    time.sleep(int(error.headers.get("Retry-After", "1")))
                    continue
                code, message = payload.get("code", ""), payload.get("message", "")
                raise ApiError(error.code, code, message) from None
        raise AssertionError("unreachable")

    def start(self, context: str | None = None) -> dict[str, Any]:
        turn: dict[str, Any] = self.call(
            "POST", "/conversations", {"context": context} if context else {}
        )
        return turn

    def choose(self, conversation_id: str, choice: str) -> dict[str, Any]:
        turn: dict[str, Any] = self.call(
            "POST", f"/conversations/{conversation_id}/messages", {"choice": choice}
        )
        return turn

    def say(self, conversation_id: str, text: str) -> dict[str, Any]:
        turn: dict[str, Any] = self.call(
            "POST", f"/conversations/{conversation_id}/messages", {"text": text}
        )
        return turn


def show(turn: dict[str, Any]) -> list[str]:
    """Print the replies as text (never as HTML) and return the ids of the choices offered."""
    offered = []
    for reply in turn["replies"]:
        print(f"Passerelle : {reply['text']}")
        if reply["image_url"]:
            # A PNG data: URL; image_alt is its full text alternative.
            print(f"  [image : {reply['image_alt']}]")
        for choice in reply["choices"]:
            print(f"   - {choice['id']} : {choice['label']}")
            offered.append(choice["id"])
    return offered


def main(answers: list[str]) -> int:
    client = Passerelle(os.environ["PASSERELLE_URL"], os.environ["PASSERELLE_KEY"])
    turn = client.start(os.environ.get("PASSERELLE_CONTEXT"))
    cid = turn["conversation_id"]
    offered = show(turn)
    recommendation = None
    pending = list(answers)
    while recommendation is None:
        if not offered:
            print("Plus aucun choix proposé avant la recommandation.", file=sys.stderr)
            return 1
        choice = pending.pop(0) if pending else offered[0]
        print(f"Vous : {choice}")
        turn = client.choose(cid, choice)
        offered = show(turn)
        # `recommendation` is filled only in the turn that makes it (null before and after):
        # keep it when it comes.
        recommendation = turn["recommendation"]

    for role in recommendation["roles"]:
        print(f"Rôle recommandé : {role['title']} ({len(role['reasons'])} raison(s))")
    for contact in recommendation["contacts"]:
        print(f"Contact : {contact['name']} — {contact['website']}")

    # Being put in touch: offered after the recommendation only when an establishment with a
    # webhook is concerned by the conversation; sent only after two « yes ».
    if "cmd:relation" in offered:
        show(client.choose(cid, "cmd:relation"))  # to whom, what would be sent: consent?
        show(client.choose(cid, "cmd:confirmer"))  # yes: how should they reach you?
        show(client.say(cid, HOW_TO_REACH))  # free text, shown back for confirmation
        show(client.choose(cid, "cmd:confirmer"))  # sent: `contact.requested` goes by webhook
    else:
        print("Aucun établissement ne reçoit de demande de contact pour cette conversation.")

    stored = client.call("GET", f"/conversations/{cid}")
    print(f"Conservé : {len(stored['transcript'])} lignes, {len(stored['answers'])} réponses")
    client.call("DELETE", f"/conversations/{cid}")
    try:
        client.call("GET", f"/conversations/{cid}")
    except ApiError as error:
        assert error.code == "conversation_not_found"
        print("Conversation effacée.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
