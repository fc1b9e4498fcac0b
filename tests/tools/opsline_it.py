"""Helpers shared by the integration tests that run the opsline binary against the ctest
fixture's moto (through run.sh: $OPSLINE, the moto env, tools on PYTHONPATH)."""
import os
import subprocess

import boto3
from botocore.config import Config

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


def read_env(path):
    """KEY=value lines of a .env file (quotes removed, comments skipped)."""
    values = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            if line.startswith("export "):
                line = line[len("export "):]
            k, v = line.split("=", 1)
            values[k.strip()] = v.strip().strip('"').strip("'")
    return values
