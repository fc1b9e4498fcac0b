#!/usr/bin/env python3
"""Prove a stored key works on its own bucket and is denied on another, with boto3 only.

usage: demo_check.py ENV_FILE OWN_BUCKET OTHER_BUCKET
Reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from ENV_FILE (never prints the secret),
talks to AWS_ENDPOINT_URL from the environment.
"""
import os
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "tools"))
from opsline_e2e import read_env  # noqa: E402


def main():
    env_file, own, other = sys.argv[1:4]
    mode = os.stat(env_file).st_mode & 0o777
    if mode != 0o600:
        sys.exit(f"{env_file} has mode {oct(mode)}, expected 0600")
    v = read_env(env_file)
    s3 = boto3.client(
        "s3",
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        region_name=v.get("AWS_REGION", "eu-north-1"),
        aws_access_key_id=v["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=v["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 1}),
    )
    s3.put_object(Bucket=own, Key="opsline-check.txt", Body=b"ok")
    body = s3.get_object(Bucket=own, Key="opsline-check.txt")["Body"].read()
    assert body == b"ok", body
    s3.delete_object(Bucket=own, Key="opsline-check.txt")
    print(f"   key {v['AWS_ACCESS_KEY_ID']}: put, get, delete on {own}: allowed")
    try:
        s3.put_object(Bucket=other, Key="opsline-check.txt", Body=b"no")
    except ClientError as e:
        code = e.response["Error"]["Code"]
        print(f"   key {v['AWS_ACCESS_KEY_ID']}: put on {other}: denied ({code})")
        return
    sys.exit(f"key from {env_file} could write to {other}: the policy is too wide")


if __name__ == "__main__":
    main()
