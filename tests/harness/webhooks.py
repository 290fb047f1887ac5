"""The hospital's side of webhooks: an independent receiver (a plain ``http.server`` that
checks Standard Webhooks signatures with its own code, not ours), the establishments file that
points at it, and a conversation through the API up to a contact request."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from bot.knowledge.establishments import Establishment, decode_secret
from tests.harness.personas import HOW, PATIENT_TRAINER

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> bool:
    """Standard Webhooks verification, written from the specification."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    if not msg_id or not stamp.isdigit() or abs(time.time() - int(stamp)) > tolerance:
        return False
    expected = base64.b64encode(
        hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    ).decode()
    for part in headers.get("webhook-signature", "").split():
        version, _, signature = part.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return True
    return False


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self.acked: dict[str, dict[str, Any]] = {}
        self.raw: list[tuple[dict[str, str], bytes]] = []
        self.rejected = 0
        self.status = 200
        self.hold = threading.Event()  # while set, requests hang (to kill the sender mid-way)
        self.held = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.raw.append((headers, body))
                if receiver.hold.is_set():
                    receiver.held += 1
                    while receiver.hold.is_set():
                        time.sleep(0.02)
                    return  # the connection is dropped without an answer
                if not verify(SECRET, headers, body):
                    receiver.rejected += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                self.send_response(receiver.status)
                self.end_headers()
                if receiver.status < 300:
                    receiver.acked.setdefault(headers["webhook-id"], json.loads(body))

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.hold.clear()
        self.server.shutdown()
        self.server.server_close()


def write_establishments(path: Path, port: int) -> Path:
    path.write_text(
        "establishments:\n"
        "  chu-a:\n"
        "    name: CHU A\n"
        "    contexts: [chu-a]\n"
        "    webhook:\n"
        f"      url: http://127.0.0.1:{port}/hooks/passerelle\n"
        "      secret_env: CHU_A_SECRET\n"
        "  region-occitanie:\n"
        "    name: Maison des usagers Occitanie\n"
        "    territories: [fr-occitanie]\n",
        encoding="utf-8",
    )
    return path


def run_to_contact_request(client: httpx.Client, context: str) -> str:
    cid: str = client.post("/conversations", json={"context": context}).json()["conversation_id"]
    for choice in PATIENT_TRAINER:
        assert (
            client.post(f"/conversations/{cid}/messages", json={"choice": choice}).status_code
            == 200
        )
    steps = [
        {"choice": "cmd:relation"},
        {"choice": "cmd:confirmer"},
        {"text": HOW},
        {"choice": "cmd:confirmer"},
    ]
    for step in steps:
        response = client.post(f"/conversations/{cid}/messages", json=step)
        assert response.status_code == 200, response.text
    return cid


def establishment(name: str, port: int) -> Establishment:
    """An establishment whose webhook is ``127.0.0.1:port/hooks``, signed with :data:`SECRET`."""
    return Establishment(
        id=name,
        name=name,
        webhook_url=f"http://127.0.0.1:{port}/hooks",
        secret=decode_secret(SECRET),
    )
