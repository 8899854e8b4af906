"""Fixtures for the reference server: a small gallery and a TestClient around it."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from server_helpers import DIM, MODEL_ID

with warnings.catch_warnings():
    # Starlette 1.x suggests httpx2 for its TestClient; httpx is what is installed.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from faceid_sdk import Enroller, FeatureCodec
from faceid_sdk.server import ServerSettings, create_app


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240501)


@pytest.fixture
def codec() -> FeatureCodec:
    return FeatureCodec(MODEL_ID, DIM)


@pytest.fixture
def enroller(tmp_path) -> Iterator[Enroller]:
    with Enroller(tmp_path / "faces.db", MODEL_ID, DIM) as e:
        yield e


@pytest.fixture
def make_client(enroller) -> Iterator[Callable[..., TestClient]]:
    """Build a TestClient over the shared enroller with the given settings."""
    clients: list[TestClient] = []

    def make(**settings) -> TestClient:
        settings.setdefault("rate_per_second", None)
        client = TestClient(create_app(enroller, settings=ServerSettings(**settings)))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()
