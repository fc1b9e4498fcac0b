#!/usr/bin/env python3
"""Start and stop a moto_server that verifies every request, for integration tests.

moto accepts the first INITIAL_NO_AUTH_ACTION_COUNT requests without looking at
their signature; after that it checks SigV4 and the caller's IAM policies on every
request. We spend exactly that budget on bootstrapping an administrator (CreateUser,
PutUserPolicy, CreateAccessKey) so that every later request, including the
tests' own, is verified against the admin's real secret. See README.md in this
directory for what moto does and does not verify.

CLI:    moto_fixture.py start --state-dir DIR    (writes DIR/env, mode 0600)
        moto_fixture.py stop  --state-dir DIR
Python: info = moto_fixture.start(DIR); ...; moto_fixture.stop(DIR)
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

REGION = "eu-north-1"
ADMIN_USER = "admin"
ADMIN_POLICY_NAME = "admin-all"
# An inline policy rather than the AWS-managed AdministratorAccess: moto only knows
# managed policies with MOTO_IAM_LOAD_MANAGED_POLICIES=true, which slows start-up.
ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
# Must equal the number of unauthenticated calls in bootstrap_admin().
BOOTSTRAP_CALLS = 3
# moto takes a few seconds to import; many times that on a busy 2-core machine.
START_TIMEOUT_S = 120.0
# Popen objects of the emulators this process started, so they are not reported
# as "still running" when garbage-collected and are reaped by stop().
_CHILDREN = {}


class FixtureError(Exception):
    pass


def free_port():
    """A loopback port that is free right now (moto binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def moto_command(port):
    exe = shutil.which("moto_server")
    if exe:
        return [exe, "-H", "127.0.0.1", "-p", str(port)]
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]


def wait_until_answering(proc, port, log_path):
    """Poll moto's own API (not an AWS action, so it does not use up the
    no-auth budget) until it answers or the process dies."""
    url = f"http://127.0.0.1:{port}/moto-api/"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FixtureError(f"moto_server exited with {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                resp.read()
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is up
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise FixtureError(f"moto_server did not answer on port {port} within {START_TIMEOUT_S}s")


def client(service, endpoint, key_id, secret, retries=1):
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"mode": "standard", "total_max_attempts": retries}),
    )


def bootstrap_admin(endpoint):
    """Spend the no-auth budget: exactly BOOTSTRAP_CALLS requests, no retries,
    since a retried request would also be counted."""
    iam = client("iam", endpoint, "AKIAIOSFODNN7BOOTSTRP", "bootstrap-dummy-secret")
    iam.create_user(UserName=ADMIN_USER)
    iam.put_user_policy(
        UserName=ADMIN_USER, PolicyName=ADMIN_POLICY_NAME, PolicyDocument=json.dumps(ADMIN_POLICY)
    )
    key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def error_code(exc):
    return getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)


def verify_enforcement(endpoint, key_id, secret):
    """The admin key works; a wrong secret and an unknown key are rejected."""
    from botocore.exceptions import ClientError

    ident = client("sts", endpoint, key_id, secret).get_caller_identity()
    if not ident["Arn"].endswith(f":user/{ADMIN_USER}"):
        raise FixtureError(f"admin key maps to {ident['Arn']}, not the admin user")
    client("s3", endpoint, key_id, secret).list_buckets()
    checks = [
        ("sts", lambda c: c.get_caller_identity(), key_id, "wrong-" + secret),
        ("s3", lambda c: c.list_buckets(), key_id, "wrong-" + secret),
        ("iam", lambda c: c.list_users(), "AKIAIOSFODNN7UNKNOWN", secret),
    ]
    for service, call, kid, sec in checks:
        try:
            call(client(service, endpoint, kid, sec))
        except ClientError as exc:
            if error_code(exc) not in (
                "SignatureDoesNotMatch",
                "InvalidClientTokenId",
                "InvalidAccessKeyId",
            ):
                raise FixtureError(f"{service}: bad credentials gave {error_code(exc)}") from exc
            continue
        raise FixtureError(f"{service}: moto accepted bad credentials; auth is not enforced")


def write_private(path, text):
    """Create with 0600 from the start (no window where the secret is readable),
    then rename into place."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def shell_quote(value):
    return "'" + str(value).replace("'", "'\"'\"'") + "'"


def write_env(state_dir, info):
    names = {
        "AWS_ENDPOINT_URL": info["endpoint"],
        "AWS_ACCESS_KEY_ID": info["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": info["secret_access_key"],
        "AWS_REGION": info["region"],
        "AWS_DEFAULT_REGION": info["region"],
        "MOTO_PORT": info["port"],
        "MOTO_PID": info["pid"],
    }
    lines = [f"export {k}={shell_quote(v)}\n" for k, v in names.items()]
    write_private(os.path.join(state_dir, "env"), "".join(lines))
    write_private(os.path.join(state_dir, "state.json"), json.dumps(info))


def read_state(state_dir):
    try:
        with open(os.path.join(state_dir, "state.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def is_moto(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"moto" in f.read()
    except OSError:
        return False


def kill_group(pid):
    """moto runs in its own session (pgid == pid): TERM it, then KILL."""
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    return
            except ChildProcessError:
                if not os.path.exists(f"/proc/{pid}") or not is_moto(pid):
                    return
            time.sleep(0.05)


def stop(state_dir):
    """Stop the moto started with this state dir; returns the old state or None."""
    state = read_state(state_dir)
    if state and is_moto(state["pid"]):
        kill_group(state["pid"])
    if state and state["pid"] in _CHILDREN:
        _CHILDREN.pop(state["pid"]).wait()
    for name in ("env", "state.json"):
        try:
            os.unlink(os.path.join(state_dir, name))
        except FileNotFoundError:
            pass
    return state


def start(state_dir, attempts=3):
    """Start moto, bootstrap the admin, verify auth; returns a dict with endpoint,
    access_key_id, secret_access_key, region, port, pid, env_file, log."""
    state_dir = os.path.abspath(state_dir)
    os.makedirs(state_dir, exist_ok=True)
    stop(state_dir)
    log_path = os.path.join(state_dir, "moto.log")
    last = None
    for _ in range(attempts):  # the free port may be taken before moto binds it
        port = free_port()
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(BOOTSTRAP_CALLS))
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            env.pop(k, None)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                moto_command(port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                close_fds=True,
                start_new_session=True,
            )
        # Record the pid at once, so `stop` finds this moto even if we die while
        # bootstrapping it.
        write_private(os.path.join(state_dir, "state.json"), json.dumps({"pid": proc.pid}))
        try:
            wait_until_answering(proc, port, log_path)
            endpoint = f"http://127.0.0.1:{port}"
            key_id, secret = bootstrap_admin(endpoint)
            verify_enforcement(endpoint, key_id, secret)
        except Exception as exc:  # noqa: BLE001 - any failure: clean up, maybe retry
            last = exc
            kill_group(proc.pid)
            proc.wait()
            continue
        _CHILDREN[proc.pid] = proc
        info = {
            "endpoint": endpoint,
            "access_key_id": key_id,
            "secret_access_key": secret,
            "region": REGION,
            "port": port,
            "pid": proc.pid,
            "env_file": os.path.join(state_dir, "env"),
            "log": log_path,
        }
        write_env(state_dir, info)
        return info
    raise FixtureError(f"could not start moto: {last}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("start", "stop"))
    ap.add_argument("--state-dir", required=True)
    args = ap.parse_args(argv)
    try:
        if args.action == "start":
            info = start(args.state_dir)
            print(
                f"moto: {info['endpoint']} pid {info['pid']} admin key "
                f"{info['access_key_id']}; env in {info['env_file']}"
            )
        else:
            state = stop(args.state_dir)
            print(f"moto: stopped pid {state['pid']}" if state else "moto: was not running")
    except FixtureError as exc:
        print(f"moto_fixture: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
