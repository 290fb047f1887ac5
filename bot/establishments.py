"""The deployment file listing partner establishments (``PASSERELLE_ETABLISSEMENTS``).

It lives outside ``contenus/`` because it holds deployment facts (webhook URLs, secrets), not
editorial content. Example::

    establishments:
      chu-exemple:
        name: CHU Exemple
        contexts: [chu-exemple]          # API/deep-link contexts this establishment serves
        territories: [fr-75]             # territories whose events it receives
        webhook:
          url: https://partenariat.chu-exemple.fr/passerelle/webhook
          secret_env: CHU_EXEMPLE_WEBHOOK_SECRET   # name of the variable holding the secret

Every problem is reported with the file and line to fix, like the knowledge base.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.knowledge.loader import Problem, read_yaml, validate_file
from bot.knowledge.model import ID_PATTERN, Location, SourceMap

#: Shortest accepted signing secret (bytes once decoded): 128 bits.
MIN_SECRET_BYTES = 16
SECRET_PREFIX = "whsec_"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WebhookFile(_Strict):
    url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")]
    secret_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    secret: str | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> WebhookFile:
        if (self.secret_env is None) == (self.secret is None):
            raise ValueError(
                "indiquez le secret de signature avec « secret_env » (nom d'une variable "
                "d'environnement, recommandé) ou « secret », l'un ou l'autre"
            )
        return self


class EstablishmentFile(_Strict):
    name: Annotated[str, Field(min_length=1)]
    contexts: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]] = []
    territories: list[str] = []
    webhook: WebhookFile | None = None


class EstablishmentsFile(_Strict):
    establishments: dict[
        Annotated[str, Field(pattern=ID_PATTERN, max_length=48)], EstablishmentFile
    ]


@dataclass(frozen=True)
class Establishment:
    id: str
    name: str
    contexts: tuple[str, ...] = ()
    territories: tuple[str, ...] = ()
    webhook_url: str | None = None
    secret: bytes | None = None

    def serves(self, context: str | None, territories: Iterable[str]) -> bool:
        """Whether an event of this context/territory (or a parent territory) concerns us."""
        if context is not None and (context == self.id or context in self.contexts):
            return True
        return bool(set(self.territories).intersection(territories))


class EstablishmentsError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def decode_secret(value: str) -> bytes:
    """A Standard Webhooks secret ``whsec_<base64>`` gives its decoded bytes; any other
    string is used as is (UTF-8). Raise ``ValueError`` if too short or badly encoded."""
    if value.startswith(SECRET_PREFIX):
        try:
            key = base64.b64decode(value[len(SECRET_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                "secret « whsec_… » mal encodé : après « whsec_ » il faut du base64"
            ) from None
    else:
        key = value.encode()
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(
            f"secret trop court : {MIN_SECRET_BYTES} octets au moins "
            "(générez-en un avec « passerelle webhooks secret »)"
        )
    return key


def new_secret() -> str:
    """A fresh signing secret in the Standard Webhooks format."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode()


def load_establishments(
    path: str | Path,
    environ: Mapping[str, str] | None = None,
    known_territories: Iterable[str] | None = None,
) -> dict[str, Establishment]:
    """Read and validate the deployment file; raise :class:`EstablishmentsError` if invalid."""
    env = os.environ if environ is None else environ
    file = str(path)
    source_map = SourceMap()
    if not Path(path).is_file():
        raise EstablishmentsError(
            [Problem(Location(file, None), "fichier des établissements introuvable")]
        )
    data, problems = read_yaml(Path(path), file, source_map)
    if data is None or problems:
        raise EstablishmentsError(problems)
    parsed, problems = validate_file(EstablishmentsFile, data, file, source_map)
    if parsed is None:
        raise EstablishmentsError(problems)
    known = set(known_territories) if known_territories is not None else None
    result: dict[str, Establishment] = {}
    for est_id, entry in parsed.establishments.items():
        base: tuple[str | int, ...] = ("establishments", est_id)
        for index, territory in enumerate(entry.territories):
            if known is not None and territory not in known:
                problems.append(
                    Problem(
                        source_map.locate(file, (*base, "territories", index)),
                        f"le territoire « {territory} » n'existe pas dans territories.yaml",
                    )
                )
        secret: bytes | None = None
        url: str | None = None
        if entry.webhook is not None:
            url = entry.webhook.url
            where = source_map.locate(file, (*base, "webhook"))
            raw = entry.webhook.secret
            if entry.webhook.secret_env is not None:
                raw = env.get(entry.webhook.secret_env)
                if not raw:
                    problems.append(
                        Problem(
                            where,
                            f"la variable d'environnement {entry.webhook.secret_env} "
                            f"(secret de signature de « {est_id} ») n'est pas définie",
                        )
                    )
                    continue
            try:
                secret = decode_secret(raw or "")
            except ValueError as exc:
                problems.append(Problem(where, f"{est_id} : {exc}"))
                continue
            if url.startswith("http://") and not _is_loopback(url):
                problems.append(
                    Problem(
                        where,
                        f"{est_id} : l'adresse du webhook doit être en https:// "
                        "(http:// n'est admis que vers 127.0.0.1 ou localhost)",
                    )
                )
        result[est_id] = Establishment(
            id=est_id,
            name=entry.name,
            contexts=tuple(entry.contexts),
            territories=tuple(entry.territories),
            webhook_url=url,
            secret=secret,
        )
    if problems:
        raise EstablishmentsError(problems)
    return result


def _is_loopback(url: str) -> bool:
    host = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0]
    return host in ("127.0.0.1", "localhost", "[::1]")


def plain(establishments: Mapping[str, Establishment]) -> list[dict[str, Any]]:
    """A printable summary (no secrets)."""
    return [
        {
            "id": e.id,
            "name": e.name,
            "contexts": list(e.contexts),
            "territories": list(e.territories),
            "webhook": e.webhook_url,
        }
        for e in establishments.values()
    ]
