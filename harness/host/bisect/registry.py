"""A registry's tags and image configs over the registry HTTP API (distribution spec v2).

``GET /v2/<repo>/tags/list`` (paged with ``?n=&last=`` and the ``Link`` header) gives the tags;
``GET /v2/<repo>/manifests/<tag>`` then ``GET /v2/<repo>/blobs/<config digest>`` gives each
image's ``created`` time and labels (a multi-platform index is followed to linux/amd64).
Docker Hub and most public registries answer 401 with a ``Bearer`` challenge: an anonymous pull
token is fetched from the realm it names. Loopback registries are spoken to over plain HTTP,
all others over HTTPS. Every request has a timeout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import requests

from harness.host.bisect.state import Candidate

TIMEOUT_S = (10, 60)  # connect, read
MAX_PAGES = 100
PAGE_SIZE = 1000
DOCKER_HUB = "registry-1.docker.io"
MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
_INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json")


class RegistryError(Exception):
    """The registry could not be asked or answered badly; the message says which URL."""


@dataclass(frozen=True)
class Repository:
    host: str  # where the API is (registry-1.docker.io for Docker Hub)
    path: str  # repository path in the API (library/ubuntu for Docker Hub's ubuntu)
    prefix: str  # what image references start with (as the user wrote it, before ':tag')
    scheme: str = "https"

    @classmethod
    def parse(cls, text: str) -> "Repository":
        scheme = ""
        if "://" in text:
            scheme, text = text.split("://", 1)
            if scheme not in ("http", "https"):
                raise RegistryError(f"--tags-from {scheme}://{text}: only http:// or https://")
        text = text.rstrip("/")
        first, _, rest = text.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            host, path = first, rest
        else:  # Docker Hub: "vllm/vllm-openai-rocm", "ubuntu" (-> library/ubuntu)
            host, path = DOCKER_HUB, text if "/" in text else f"library/{text}"
        if not re.fullmatch(r"[a-z0-9]+(?:[._/-][a-z0-9]+)*", path):
            raise RegistryError(f"--tags-from {text}: {path!r} is not a repository path")
        loopback = host.split(":")[0] in ("127.0.0.1", "localhost", "[::1]")
        return cls(host, path, text, scheme or ("http" if loopback else "https"))

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}/v2/{self.path}"


class RegistryClient:
    def __init__(self, repo: Repository, session: requests.Session | None = None):
        self.repo = repo
        self.session = session or requests.Session()
        self._token: str | None = None

    def tags(self) -> list[str]:
        url: str | None = f"{self.repo.base}/tags/list?n={PAGE_SIZE}"
        tags: list[str] = []
        for _ in range(MAX_PAGES):
            if url is None:
                return tags
            response = self._get(url, "application/json")
            tags += list(_json(response, url).get("tags") or [])
            url = _next_page(response, self.repo)
        raise RegistryError(f"{self.repo.base}/tags/list: more than {MAX_PAGES} pages")

    def candidate(self, tag: str) -> Candidate:
        """The image ``prefix:tag`` with its creation time and labels from its config."""
        digest, config = self.image_config(tag)
        labels = (config.get("config") or {}).get("Labels") or {}
        return Candidate(ref=f"{self.repo.prefix}:{tag}", digest=digest,
                         created=str(config.get("created", "")),
                         labels={str(k): str(v) for k, v in labels.items()})

    def image_config(self, reference: str) -> tuple[str, dict[str, Any]]:
        """The digest ``reference`` resolves to (what `docker pull` records as RepoDigests) and
        the image config it names."""
        url = f"{self.repo.base}/manifests/{reference}"
        response = self._get(url, MANIFEST_TYPES)
        digest = response.headers.get("Docker-Content-Digest", "")
        manifest = _json(response, url)
        if manifest.get("mediaType") in _INDEX_TYPES or "manifests" in manifest:
            url = f"{self.repo.base}/manifests/{_amd64(manifest, url)}"
            manifest = _json(self._get(url, MANIFEST_TYPES), url)
        config_digest = (manifest.get("config") or {}).get("digest")
        if not config_digest:
            raise RegistryError(f"{url}: manifest has no config digest (schema 1 is not read)")
        blob = f"{self.repo.base}/blobs/{config_digest}"
        return digest, _json(self._get(blob, "application/json"), blob)

    def _get(self, url: str, accept: str) -> requests.Response:
        for attempt in range(2):
            headers = {"Accept": accept}
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            try:
                response = self.session.get(url, headers=headers, timeout=TIMEOUT_S)
            except requests.RequestException as exc:
                raise RegistryError(f"{url}: {type(exc).__name__}: {exc}") from None
            if response.status_code == 401 and attempt == 0 and self._authenticate(response):
                continue
            if response.status_code != 200:
                raise RegistryError(f"{url}: HTTP {response.status_code} "
                                    f"{response.text[:200].strip()}")
            return response
        raise RegistryError(f"{url}: still unauthorized with an anonymous token")

    def _authenticate(self, response: requests.Response) -> bool:
        """Fetch an anonymous token from a ``Bearer realm=...`` challenge."""
        challenge = response.headers.get("WWW-Authenticate", "")
        if not challenge.lower().startswith("bearer "):
            return False
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", "")
        if not realm.startswith(("https://", "http://")):
            return False
        params.setdefault("scope", f"repository:{self.repo.path}:pull")
        try:
            answer = self.session.get(realm, params=params, timeout=TIMEOUT_S)
        except requests.RequestException as exc:
            raise RegistryError(f"{realm}: {type(exc).__name__}: {exc}") from None
        if answer.status_code != 200:
            raise RegistryError(f"{realm}: token request: HTTP {answer.status_code}")
        body = _json(answer, realm)
        self._token = body.get("token") or body.get("access_token")
        return bool(self._token)


def _json(response: requests.Response, url: str) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        raise RegistryError(f"{url}: answer is not JSON") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{url}: answer is not a JSON object")
    return data


def _next_page(response: requests.Response, repo: Repository) -> str | None:
    link = response.headers.get("Link", "")
    match = re.search(r"<([^>]+)>\s*;\s*rel=\"?next\"?", link)
    if not match:
        return None
    target = match.group(1)
    return target if "://" in target else f"{repo.scheme}://{repo.host}{target}"


def _amd64(index: dict[str, Any], url: str) -> str:
    for entry in index.get("manifests") or []:
        platform = entry.get("platform") or {}
        if platform.get("os") == "linux" and platform.get("architecture") == "amd64":
            return str(entry["digest"])
    raise RegistryError(f"{url}: the image index has no linux/amd64 image")


def registry_candidates(text: str, pattern: str | None = None,
                        session: requests.Session | None = None) -> list[Candidate]:
    """Every tag of the repository (those matching ``pattern``) with its config, unordered."""
    repo = Repository.parse(text)
    client = RegistryClient(repo, session)
    tags = client.tags()
    if pattern:
        try:
            wanted = re.compile(pattern)
        except re.error as exc:
            raise RegistryError(f"--tag-pattern {pattern!r}: {exc}") from None
        tags = [t for t in tags if wanted.fullmatch(t)]
    if not tags:
        raise RegistryError(f"{repo.base}/tags/list: no tag" + (f" matches {pattern!r}"
                                                                if pattern else ""))
    return [client.candidate(tag) for tag in tags]
