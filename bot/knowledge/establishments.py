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
import ipaddress
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.json_types import JsonObject
from bot.knowledge.loader import read_yaml, validate_file
from bot.knowledge.model import ID_PATTERN, Location, SourceMap
from bot.knowledge.problems import Problem

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
            problem = target_problem(url)
            if problem is not None:
                problems.append(Problem(where, f"{est_id} : adresse du webhook refusée, {problem}"))
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


#: Names of cloud metadata services and of private name spaces: never a webhook target.
FORBIDDEN_NAMES = ("metadata", "metadata.google.internal", "instance-data")
FORBIDDEN_SUFFIXES = (".internal", ".local", ".localdomain", ".localhost", ".home.arpa", ".lan")


def literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an IP address if it is one, in any form a resolver accepts (``10.0.0.5``,
    ``::1``, but also ``2852039166`` or ``0xa9fea9fe``, which mean 169.254.169.254)."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except (OSError, ValueError):
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_problem(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why a webhook must not be sent to ``address`` (loopback is allowed: a receiver on the
    same host, or a test), or ``None``."""
    if address.is_loopback:
        return None
    if not address.is_global or address.is_multicast:
        return (
            f"{address} est une adresse privée, locale, réservée ou de métadonnées "
            "(169.254.169.254…) : indiquez l'adresse publique du récepteur"
        )
    return None


def target_problem(url: str) -> str | None:
    """Why ``url`` cannot be a webhook target, or ``None``: https (http only to loopback), no
    user name or password in it, no private, link-local or metadata address or name."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a malformed port)
    except ValueError:
        return "adresse mal formée"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "il faut une adresse https://hôte/chemin"
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        return "pas d'identifiant ni de mot de passe dans l'adresse (« user@hôte »)"
    host = parts.hostname.lower().rstrip(".")
    address = literal_address(host)
    loopback = host == "localhost" or (address is not None and address.is_loopback)
    if parts.scheme == "http" and not loopback:
        return "elle doit être en https:// (http:// n'est admis que vers 127.0.0.1 ou localhost)"
    if address is not None:
        return address_problem(address)
    if host in FORBIDDEN_NAMES or host.endswith(FORBIDDEN_SUFFIXES):
        return f"« {host} » est un nom local ou de service de métadonnées"
    return None


def plain(establishments: Mapping[str, Establishment]) -> list[JsonObject]:
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
