#!/usr/bin/env python3
"""The benchmark's peer: what a careful boto3 user writes to do what `opsline apply` does.

For every product x environment (an "item", named <product>-<environment>) it makes the
same AWS calls, in the same converge order, as opsline's default pipeline (bucket, iam,
policy, dotenv) and writes the same <bucket>.env file (mode 0600, temp file + fsync +
rename). Items run on a ThreadPoolExecutor (16 threads by default, one item per task);
the boto3 session and its two clients are created once and shared, as botocore clients
are thread-safe and creating one per task is a well-known boto3 performance mistake.

Endpoints and credentials come from the environment as for any boto3 program
(AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_IAM, AWS_ACCESS_KEY_ID, ...).

Calls per fresh item (what opsline sends too):
  S3:  HeadBucket, CreateBucket (LocationConstraint), Get/PutPublicAccessBlock,
       Get/PutBucketEncryption (AES256), GetBucketVersioning, GetBucketLogging
  IAM: CreateUser (GetUser + GetLoginProfile only when the user already existed),
       ListAccessKeys, CreateAccessKey, GetUserPolicy, PutUserPolicy

With --writes-only (what the benchmark runs, as issue 7 asks of the peer) a fresh item gets
only the runbook's 6 writes, one per step and no read: CreateBucket, PutPublicAccessBlock,
PutBucketEncryption, CreateUser, CreateAccessKey, PutUserPolicy. That is the least a script
can send, and it does not converge a rerun (CreateUser fails on an existing user).

usage: peer_boto3.py [--threads 16] [--environments production,staging] [--writes-only]
                     [--out-dir DIR] [--products-file F] PRODUCT...
Exit code 0 when every item succeeded, 1 otherwise (failures on stderr, never secrets).
"""

import argparse
import concurrent.futures
import json
import os
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

RUNBOOK_ACTIONS = [
    "s3:ListBucketMultipartUploads",
    "s3:GetObjectRetention",
    "s3:DeleteObjectVersion",
    "s3:RestoreObject",
    "s3:ListBucket",
    "s3:ListMultipartUploadParts",
    "s3:PutObject",
    "s3:GetObjectAcl",
    "s3:GetObject",
    "s3:PutObjectRetention",
    "s3:PutObjectVersionAcl",
    "s3:GetObjectVersionAcl",
    "s3:DeleteObject",
    "s3:PutObjectAcl",
    "s3:GetObjectVersion",
]
PAB = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def code_of(exc):
    return exc.response.get("Error", {}).get("Code", "")


def status_of(exc):
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)


def converge_bucket(s3, name, region):
    try:
        s3.head_bucket(Bucket=name)
    except ClientError as exc:
        if status_of(exc) not in (403, 404):
            raise
        try:
            kwargs = {"Bucket": name}
            if region != "us-east-1":  # S3 API Reference, CreateBucket: us-east-1 omits it
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
            s3.create_bucket(**kwargs)
        except ClientError as exc2:
            if code_of(exc2) != "BucketAlreadyOwnedByYou":
                raise
    try:
        pab = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
    except ClientError as exc:
        if code_of(exc) != "NoSuchPublicAccessBlockConfiguration":
            raise
        pab = None
    if pab != PAB:
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=PAB)
    try:
        rules = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
        algo = rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] if rules else None
    except ClientError as exc:
        if code_of(exc) != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        algo = None
    if algo != "AES256":
        s3.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
    if s3.get_bucket_versioning(Bucket=name).get("Status") == "Enabled":
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Suspended"})
    if "LoggingEnabled" in s3.get_bucket_logging(Bucket=name):
        s3.put_bucket_logging(Bucket=name, BucketLoggingStatus={})


def converge_user(iam, user):
    """Returns the new key (id, secret), or None when the user already has one."""
    try:
        iam.create_user(UserName=user, Path="/")
    except ClientError as exc:
        if code_of(exc) != "EntityAlreadyExists":
            raise
        iam.get_user(UserName=user)
        try:
            iam.get_login_profile(UserName=user)
            print(f"{user}: has a console password", file=sys.stderr)
        except ClientError as exc2:
            if code_of(exc2) != "NoSuchEntity":
                raise
    if iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
        return None
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def converge_policy(iam, user, bucket):
    arn = f"arn:aws:s3:::{bucket}"
    want = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": RUNBOOK_ACTIONS, "Resource": [arn, arn + "/*"]}
        ],
    }
    try:
        have = iam.get_user_policy(UserName=user, PolicyName=user)["PolicyDocument"]
        st = have.get("Statement", [{}])[0]
        if set(st.get("Action", [])) == set(RUNBOOK_ACTIONS) and set(st.get("Resource", [])) == {
            arn,
            arn + "/*",
        }:
            return
    except ClientError as exc:
        if code_of(exc) != "NoSuchEntity":
            raise
    iam.put_user_policy(UserName=user, PolicyName=user, PolicyDocument=json.dumps(want))


def write_env(path, key_id, secret, region, bucket):
    """0600 from creation, fsync'd, renamed into place: what opsline's dotenv stage does."""
    text = (
        f"AWS_ACCESS_KEY_ID={key_id}\nAWS_SECRET_ACCESS_KEY={secret}\n"
        f"AWS_REGION={region}\nS3_BUCKET={bucket}\n"
    )
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def apply_item(s3, iam, region, out_dir, name):
    converge_bucket(s3, name, region)
    key = converge_user(iam, name)
    converge_policy(iam, name, name)
    if key is not None:
        write_env(os.path.join(out_dir, f"{name}.env"), key[0], key[1], region, name)
    return name


def apply_item_writes_only(s3, iam, region, out_dir, name):
    """The runbook's 6 writes for a fresh item, nothing read first."""
    kwargs = {"Bucket": name}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**kwargs)
    s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=PAB)
    s3.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    iam.create_user(UserName=name, Path="/")
    key = iam.create_access_key(UserName=name)["AccessKey"]
    arn = f"arn:aws:s3:::{name}"
    doc = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": RUNBOOK_ACTIONS, "Resource": [arn, arn + "/*"]}
        ],
    }
    iam.put_user_policy(UserName=name, PolicyName=name, PolicyDocument=json.dumps(doc))
    write_env(
        os.path.join(out_dir, f"{name}.env"), key["AccessKeyId"], key["SecretAccessKey"], region, name
    )
    return name


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("products", nargs="*")
    ap.add_argument("--products-file")
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("-e", "--environments", default="production,staging")
    ap.add_argument("--out-dir", default=".")
    ap.add_argument(
        "--writes-only", action="store_true", help="send only the 6 writes of a fresh item"
    )
    ap.add_argument("--retry-mode", default="standard", choices=("standard", "adaptive"),
                    help="botocore retry mode (adaptive: client-side rate limiting)")
    args = ap.parse_args(argv)
    work = apply_item_writes_only if args.writes_only else apply_item
    products = list(args.products)
    if args.products_file:
        with open(args.products_file) as f:
            products += [line.strip() for line in f if line.strip()]
    items = [f"{p}-{e}" for p in products for e in args.environments.split(",")]
    if not items:
        ap.error("no products")

    session = boto3.session.Session()
    region = session.region_name or "eu-north-1"
    # One HTTP connection per worker thread, standard retry mode as the AWS SDK docs advise
    # (adaptive for bench/throttle.py).
    cfg = Config(
        region_name=region,
        max_pool_connections=args.threads,
        retries={"mode": args.retry_mode, "max_attempts": 3},
    )
    s3 = session.client("s3", config=cfg)
    iam = session.client("iam", config=cfg)

    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.threads) as pool:
        futures = {
            pool.submit(work, s3, iam, region, args.out_dir, name): name for name in items
        }
        for fut in concurrent.futures.as_completed(futures):
            try:
                fut.result()
            except Exception as exc:  # noqa: BLE001 - report every item's failure
                failed += 1
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                print(f"{futures[fut]}: {type(exc).__name__}: {msg}", file=sys.stderr)
    print(f"peer_boto3: {len(items) - failed}/{len(items)} items ok, {args.threads} threads")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
