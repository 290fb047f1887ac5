"""A webhook receiver for Passerelle's events, as an establishment would run it.

It checks each delivery with the official Standard Webhooks library, ignores an id it has
already handled (a delivery may be repeated), answers 204, and prints the event. Run it with
the secret declared for the establishment (`passerelle webhooks secret`):

    pip install standardwebhooks
    WEBHOOK_SECRET=whsec_… PORT=9000 python examples/webhook_receiver.py

The two event bodies are described, field by field, in the ``webhooks`` section of
``/api/v1/openapi.json`` and in docs/integration.md.
"""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks import Webhook, WebhookVerificationError

webhook = Webhook(os.environ["WEBHOOK_SECRET"])
seen: set[str] = set()  # a real receiver keeps these ids in its database


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            event = webhook.verify(body, headers)  # the raw body, before any JSON decoding
        except WebhookVerificationError:
            self.send_response(400)
            self.end_headers()
            return
        if headers["webhook-id"] not in seen:
            seen.add(headers["webhook-id"])
            if event["type"] == "contact.requested":
                data = event["data"]
                print(
                    f"À recontacter : {data['how_to_reach']} (rôles : {', '.join(data['roles'])})"
                )
            print(json.dumps(event, ensure_ascii=False), flush=True)
        self.send_response(204)  # any 2xx: received, it will not be sent again
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass  # no access log: the bodies hold personal data


if __name__ == "__main__":
    server = HTTPServer(("127.0.0.1", int(os.environ.get("PORT", "9000"))), Handler)
    print(f"Prêt sur http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()
