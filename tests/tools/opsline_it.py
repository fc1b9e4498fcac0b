"""Helpers shared by the integration tests that run the opsline binary against the ctest
fixture's moto (through run.sh: $OPSLINE, the moto env, tools on PYTHONPATH)."""
import os
import subprocess

import boto3
from botocore.config import Config

import faultproxy
from opsline_e2e import read_env  # noqa: F401 - for the tests

OPSLINE = os.environ["OPSLINE"]
ENDPOINT = os.environ["AWS_ENDPOINT_URL"]
KEY = os.environ["AWS_ACCESS_KEY_ID"]
SECRET = os.environ["AWS_SECRET_ACCESS_KEY"]
REGION = "eu-north-1"


def base_env(**extra):
    """The caller's environment without AWS_* variables, plus the fixture's admin key and
    endpoint; a value None removes that variable."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    e.update({
        "AWS_ENDPOINT_URL": ENDPOINT,
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "OPSLINE_RETRY_BASE_MS": "20",
    })
    e.update(extra)
    return {k: v for k, v in e.items() if v is not None}


def opsline(*args, env=None, cwd=None, timeout=120):
    return subprocess.run([OPSLINE, *args], env=env or base_env(), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def client(service, key=None, secret=None, token=None, endpoint=None):
    """A boto3 client with no retries (a retried request would hide a failure)."""
    return boto3.client(service, endpoint_url=endpoint or ENDPOINT, region_name=REGION,
                        aws_access_key_id=key or KEY, aws_secret_access_key=secret or SECRET,
                        aws_session_token=token,
                        config=Config(retries={"mode": "standard", "total_max_attempts": 1}))


class Proxy:
    """The test module's faultproxy in front of the fixture's moto, started by setUpModule and
    stopped by tearDownModule:
        PROXY = Proxy()
        setUpModule, tearDownModule = PROXY.start, PROXY.stop
    Otherwise it is the faultproxy.ProxyProcess (PROXY.url, PROXY.configure(), ...)."""

    def __init__(self):
        self.process = None

    def start(self):
        self.process = faultproxy.ProxyProcess(ENDPOINT)

    def stop(self):
        if self.process is not None:
            self.process.stop()

    def __getattr__(self, name):
        return getattr(self.process, name)
