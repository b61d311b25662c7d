"""Shared fixtures: the bundled real bars, an isolated working directory and environment, fake AWS credentials
and one moto server (S3, SNS, SQS, Secrets Manager, SSM) per session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pandas as pd
import pytest
from hypothesis import settings

from scalpbot.adapters.marketdata.files import read_bar_file, sample_path
from scalpbot.adapters.store import S3Store
from scalpbot.core.bars import validate_bars

from support.moto_server import MotoServer, running_moto_server
from support.operated import basket_store, operated_store
from support.postgres import postgres_server, postgres_url
from support.trained import active_release
from support.web import browser

# Property tests assert results, never speed: a test case that runs slowly on a loaded machine is not a failure.
settings.register_profile("scalpbot", deadline=None)
settings.load_profile("scalpbot")

# A trained release on the sample, shared by the job, broker and Lambda tests; a store with replayed bots; a
# PostgreSQL server for the shared tuning studies.
__all__ = ["active_release", "basket_store", "browser", "operated_store", "postgres_server", "postgres_url"]

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@pytest.fixture(scope="session")
def sample_bars() -> pd.DataFrame:
    """Return the bundled six weeks of real Binance BTC/USDT 1m bars, validated."""
    return validate_bars(read_bar_file(sample_path()), "1m", source="sample")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each test in its own folder with no SCALPBOT_* variables from the outer environment but one:
    the folds are fitted in the test's own process."""
    for name in list(os.environ):
        if name.upper().startswith("SCALPBOT"):
            monkeypatch.delenv(name)
    # The folds' fits run in this process: a test's fits are too small to pay for starting worker processes
    # (tests/ml/test_fit_pool.py and the train phase tests set train.fit_workers themselves).
    monkeypatch.setenv("SCALPBOT_TRAIN__FIT_WORKERS", "1")
    monkeypatch.chdir(tmp_path)
    return


@pytest.fixture(autouse=True)
def _dummy_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Point boto3 at fake credentials so that no test can find, or use, real ones."""
    nowhere = tmp_path_factory.getbasetemp() / "no-aws-config"
    for name in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(nowhere))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """Yield one moto server for the whole session; tests reset it through ``s3_client``."""
    with running_moto_server() as server:
        yield server


@pytest.fixture
def s3_client(moto_server: MotoServer, _dummy_aws_credentials: None) -> S3Client:
    """Return a boto3 S3 client for an emptied moto server."""
    moto_server.reset()
    return boto3.client("s3", endpoint_url=moto_server.endpoint_url, region_name="us-east-1")


@pytest.fixture
def s3_bucket(s3_client: S3Client) -> str:
    """Create and return a fresh bucket."""
    name = f"scalpbot-test-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_store(s3_client: S3Client, s3_bucket: str) -> S3Store:
    """Return an ``S3Store`` on a fresh bucket under the prefix ``contract/``."""
    return S3Store(s3_bucket, "contract", s3_client)


TRAINED = {"active_release", "operated_store", "swap_release"}
"""Fixtures that train a release (and replay bots on it): a test that uses one is ``slow``."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test that needs a trained release, so ``pytest -m "not slow"`` stays a fast loop."""
    for item in items:
        if TRAINED & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
