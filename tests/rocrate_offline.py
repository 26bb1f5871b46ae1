"""Validate an RO-Crate with roc-validator without the network.

The validator fetches the crate's JSON-LD context over HTTP through a requests_cache
session; in offline mode it reads only that cache. We seed the cache with the context the
`rocrate` package ships (a superset of RO-Crate 1.1's terms) under the 1.1 context URL, so
the check runs the same on a machine with no network.
"""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from requests_cache import CachedSession
from urllib3 import HTTPResponse

CONTEXT_URL = "https://w3id.org/ro/crate/1.1/context"


def seed_cache(cache: Path) -> Path:
    """Write the RO-Crate context into a requests_cache SQLite file at `cache`."""
    context = resources.files("rocrate").joinpath("data/ro-crate.jsonld").read_bytes()
    session = CachedSession(cache_name=str(cache), backend="sqlite", expire_after=-1)
    for accept in ("application/ld+json, application/json", "application/ld+json", None):
        request = session.prepare_request(
            requests.Request("GET", CONTEXT_URL, headers={"Accept": accept} if accept else {}))
        raw = HTTPResponse(body=io.BytesIO(context), status=200, preload_content=False,
                           headers={"Content-Type": "application/ld+json"}, request_url=CONTEXT_URL)
        response = HTTPAdapter().build_response(request, raw)
        response.content  # noqa: B018 - read the body so the cache stores it
        session.cache.save_response(response)
    session.close()
    return cache


def validate(crate: Path, cache: Path, profile: str = "process-run-crate-0.5") -> list[str]:
    """The REQUIRED issues roc-validator finds in `crate` (offline); [] when it conforms."""
    from rocrate_validator import models, services

    settings = services.ValidationSettings(
        rocrate_uri=str(crate), profile_identifier=profile,
        requirement_severity=models.Severity.REQUIRED, offline=True, cache_path=str(seed_cache(cache)))
    result = services.validate(settings)
    return [f"{issue.check.identifier} {issue.check.name}: {issue.message}" for issue in result.get_issues()]
