#!/usr/bin/env python3
"""Credentials the way teams have them, end to end against the auth-enforcing moto: a role
assumed from a source profile (and a two-step chain), credential_source = Environment, web
identity (profile and AWS_ROLE_ARN), IAM Identity Center (SSO) with the token cache, the
container endpoint and IMDSv2 (local stand-ins, tests/tools/credservers.py), credentials that
expire mid-run, a hanging credential_process, and two environments under two identities in
one run. The source user may only assume roles (moto denies it S3 and IAM), so a created
bucket was created by the role; whoami shows the role session. No secret, session token or
SSO token may appear in stdout, stderr (-v, --json) or the state directory. Run through run.sh.
"""
import hashlib
import json
import os
import pty
import select
import shutil
import subprocess
import tempfile
import time
import unittest
import zlib

from botocore.exceptions import ClientError

import credservers
from opsline_it import (ENDPOINT, KEY, OPSLINE, REGION, SECRET, Proxy, base_env, client,
                        opsline)

ACCOUNT = "123456789012"
TAG = f"cs{os.getpid()}"
SOURCE_USER = f"{TAG}-dev"
DEPLOY = f"{TAG}-deploy"      # trusted by the source user
TOP = f"{TAG}-top"            # trusted by DEPLOY's session "mid-session" (a chain)
STAGE = f"{TAG}-stage"        # trusted by the source user, for the staging environment
CI = f"{TAG}-ci"              # for web identity
# Users whose keys the stand-ins hand out, a set per test (IAM allows two keys a user).
ROTATE_USERS = [f"{TAG}-rot{i}" for i in range(6)]
SSO_USERS = [f"{TAG}-sso{i}" for i in range(3)]
TASK_USERS = [f"{TAG}-task{i}" for i in range(3)]
INSTANCE_USERS = [f"{TAG}-inst{i}" for i in range(3)]
ALL = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:*", "iam:*", "sts:*", "secretsmanager:*"],
     "Resource": "*"}]}
WEB_TOKEN = f"eyJ.web-identity-token.{os.urandom(12).hex()}"
SSO_TOKEN = f"sso-bearer-{os.urandom(12).hex()}"
CONTAINER_TOKEN = f"container-auth-{os.urandom(12).hex()}"
PROXY = Proxy()


def trust(principal):
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": principal},
        "Action": ["sts:AssumeRole", "sts:AssumeRoleWithWebIdentity"]}]})


def setUpModule():
    global DEV_KEY
    PROXY.start()
    iam = client("iam")
    iam.create_user(UserName=SOURCE_USER)
    iam.put_user_policy(UserName=SOURCE_USER, PolicyName="assume-only", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}))
    DEV_KEY = iam.create_access_key(UserName=SOURCE_USER)["AccessKey"]
    dev_arn = f"arn:aws:iam::{ACCOUNT}:user/{SOURCE_USER}"
    for role, principal in ((DEPLOY, dev_arn), (STAGE, dev_arn),
                            (TOP, f"arn:aws:sts::{ACCOUNT}:assumed-role/{DEPLOY}/mid-session"),
                            (CI, f"arn:aws:iam::{ACCOUNT}:user/admin")):
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust(principal))
        iam.put_role_policy(RoleName=role, PolicyName="all", PolicyDocument=json.dumps(ALL))
    for user in ROTATE_USERS + SSO_USERS + TASK_USERS + INSTANCE_USERS:
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="all", PolicyDocument=json.dumps(ALL))


tearDownModule = PROXY.stop


def role_arn(name):
    return f"arn:aws:iam::{ACCOUNT}:role/{name}"


class CredentialSourcesTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="opsline-it-csrc.")
        self.config = os.path.join(self.work, "config")
        self.credentials = os.path.join(self.work, "credentials")
        self.home = os.path.join(self.work, "home")
        os.makedirs(self.home)
        with open(self.credentials, "w") as f:
            f.write(f"[dev]\naws_access_key_id = {DEV_KEY['AccessKeyId']}\n"
                    f"aws_secret_access_key = {DEV_KEY['SecretAccessKey']}\n")
        self.secrets = [DEV_KEY["SecretAccessKey"], SECRET, WEB_TOKEN, SSO_TOKEN,
                        CONTAINER_TOKEN]
        self.servers = []
        self.n = 0

    def tearDown(self):
        for s in self.servers:
            s.stop()

    def write_config(self, text):
        with open(self.config, "w") as f:
            f.write(text)

    def env(self, **extra):
        """No keys in the environment: the profile (or the source under test) must give them."""
        e = dict(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None, HOME=self.home,
                 AWS_CONFIG_FILE=self.config, AWS_SHARED_CREDENTIALS_FILE=self.credentials,
                 AWS_EC2_METADATA_DISABLED="true")
        e.update(extra)
        return base_env(**e)

    def product(self):
        self.n += 1
        return f"{TAG}t{zlib.crc32(self._testMethodName.encode()) % 100000}n{self.n}"

    def assert_nothing_leaked(self, r, extra=()):
        texts = [r.stdout, r.stderr]
        for root, _, files in os.walk(os.path.join(self.work, "state")):
            for name in files:
                with open(os.path.join(root, name), errors="replace") as f:
                    texts.append(f.read())
        for secret in [*self.secrets, *extra]:
            for t in texts:
                self.assertNotIn(secret, t)

    def apply(self, product, env, *args, envs="production"):
        return opsline("apply", product, "-e", envs, "-v", "--json", "--state-dir",
                       os.path.join(self.work, "state"), *args, cwd=self.work, env=env,
                       timeout=240)

    def assert_applied_as(self, product, env, arn_prefix, *args, extra_secrets=()):
        r = self.apply(product, env, *args)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"acting as {arn_prefix}", r.stderr)
        client("s3").head_bucket(Bucket=f"{product}-production")
        self.assertEqual(len(client("iam").list_access_keys(
            UserName=f"{product}-production")["AccessKeyMetadata"]), 1)
        w = opsline("whoami", "--json", *args, env=env)
        self.assertEqual(w.returncode, 0, w.stderr)
        self.assertTrue(json.loads(w.stdout)["Arn"].startswith(arn_prefix), w.stdout)
        self.assert_nothing_leaked(r, extra_secrets)
        self.assert_nothing_leaked(w, extra_secrets)
        return r

    # ---- assumed roles ------------------------------------------------------------------

    def test_source_user_alone_may_not_write(self):
        """The premise of the role tests: the source profile cannot create anything."""
        s3 = client("s3", DEV_KEY["AccessKeyId"], DEV_KEY["SecretAccessKey"])
        with self.assertRaises(ClientError) as e:
            s3.create_bucket(Bucket=f"{TAG}-denied",
                             CreateBucketConfiguration={"LocationConstraint": REGION})
        self.assertEqual(e.exception.response["Error"]["Code"], "AccessDenied")

    def test_role_with_source_profile_applies_as_the_role(self):
        self.write_config(f"[profile deploy]\nrole_arn = {role_arn(DEPLOY)}\n"
                          f"source_profile = dev\nrole_session_name = it-session\n"
                          f"duration_seconds = 900\nexternal_id = ext-42\n")
        self.assert_applied_as(self.product(), self.env(), f"arn:aws:sts::{ACCOUNT}:assumed-role/"
                               f"{DEPLOY}/it-session", "--profile", "deploy")

    def test_two_step_role_chain_applies_as_the_last_role(self):
        self.write_config(f"[profile top]\nrole_arn = {role_arn(TOP)}\nsource_profile = mid\n"
                          f"[profile mid]\nrole_arn = {role_arn(DEPLOY)}\nsource_profile = dev\n"
                          f"role_session_name = mid-session\n")
        self.assert_applied_as(self.product(), self.env(AWS_PROFILE="top"),
                               f"arn:aws:sts::{ACCOUNT}:assumed-role/{TOP}/")

    def test_credential_source_environment_assumes_with_the_environment_keys(self):
        self.write_config(f"[profile envrole]\nrole_arn = {role_arn(DEPLOY)}\n"
                          f"credential_source = Environment\n")
        env = self.env(AWS_ACCESS_KEY_ID=DEV_KEY["AccessKeyId"],
                       AWS_SECRET_ACCESS_KEY=DEV_KEY["SecretAccessKey"])
        # --profile: with AWS_PROFILE the environment's keys would be used as they are, before
        # any profile (the SDKs' order).
        self.assert_applied_as(self.product(), env,
                               f"arn:aws:sts::{ACCOUNT}:assumed-role/{DEPLOY}/", "--profile",
                               "envrole")

    def test_mfa_code_is_asked_on_the_terminal_and_sent_with_assume_role(self):
        self.write_config(f"[profile mfa]\nrole_arn = {role_arn(DEPLOY)}\nsource_profile = dev\n"
                          f"mfa_serial = arn:aws:iam::{ACCOUNT}:mfa/alice\n")
        PROXY.configure()
        env = self.env(AWS_ENDPOINT_URL=PROXY.url)
        pid, fd = pty.fork()
        if pid == 0:  # the child: opsline on a terminal of its own
            try:
                os.execve(OPSLINE, [OPSLINE, "whoami", "--profile", "mfa"], env)
            finally:
                os._exit(127)
        out, asked = b"", False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if not asked and b"Enter MFA code for" in out:
                os.write(fd, b"123456\n")
                asked = True
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        text = out.decode(errors="replace")
        self.assertTrue(asked, text)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, text)
        self.assertIn(f"assumed-role/{DEPLOY}/", text)
        assume = [e for e in PROXY.requests() if e.get("action") == "AssumeRole"]
        self.assertEqual(len(assume), 1, PROXY.requests())
        self.assertEqual(assume[0]["params"].get("SerialNumber"),
                         f"arn:aws:iam::{ACCOUNT}:mfa/alice")
        self.assertEqual(assume[0]["params"].get("TokenCode"), "123456")
        # The session went to the AWS CLI's cache: without a terminal the profile now works,
        # with no code asked and no AssumeRole sent, as long as the session lasts.
        cached = os.listdir(self.cache_dir())
        self.assertEqual(len(cached), 1)
        PROXY.configure()
        r = self.no_tty(["whoami", "--profile", "mfa"], env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"assumed-role/{DEPLOY}/", r.stdout)
        self.assertNotIn("MFA", r.stdout + r.stderr)
        self.assertEqual([e for e in PROXY.requests() if e.get("action") == "AssumeRole"], [])
        # Without it and without a terminal the same profile is refused before any request.
        os.remove(os.path.join(self.cache_dir(), cached[0]))
        PROXY.configure()
        r = self.no_tty(["whoami", "--profile", "mfa"], env)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("no terminal", r.stderr)
        self.assertIn("aws sts get-caller-identity --profile mfa", r.stderr)
        self.assertEqual(PROXY.requests(), [])

    def cache_dir(self):
        return os.path.join(self.home, ".aws", "cli", "cache")

    def no_tty(self, args, env):
        return subprocess.run([OPSLINE, *args], env=env, capture_output=True, text=True,
                              timeout=60, start_new_session=True, stdin=subprocess.DEVNULL)

    def aws_cli(self, *args, env):
        r = subprocess.run(["aws", *args, "--output", "json"], env=env, capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def test_role_sessions_are_shared_with_the_aws_cli_cache(self):
        self.write_config(f"[profile deploy]\nrole_arn = {role_arn(DEPLOY)}\n"
                          f"source_profile = dev\nduration_seconds = 3600\nexternal_id = ext-7\n")
        env = self.env()
        # The AWS CLI assumes the role and caches the session...
        cli_arn = self.aws_cli("sts", "get-caller-identity", "--profile", "deploy", env=env)["Arn"]
        self.assertIn(f"assumed-role/{DEPLOY}/botocore-session-", cli_arn)
        cached = os.listdir(self.cache_dir())
        self.assertEqual(len(cached), 1)
        # ...and opsline finds it under the same name: the same session, no AssumeRole.
        PROXY.configure()
        w = opsline("whoami", "--json", "--profile", "deploy",
                    env=self.env(AWS_ENDPOINT_URL=PROXY.url))
        self.assertEqual(w.returncode, 0, w.stderr)
        self.assertEqual(json.loads(w.stdout)["Arn"], cli_arn)
        self.assertEqual([e for e in PROXY.requests() if e.get("action") == "AssumeRole"], [])
        # The other way round: opsline assumes the role, writes the file the CLI looks for
        # (0600, in a 0700 directory when it makes one), and the CLI uses that session.
        shutil.rmtree(os.path.join(self.home, ".aws"))
        w = opsline("whoami", "--json", "--profile", "deploy", env=env)
        self.assertEqual(w.returncode, 0, w.stderr)
        ours = json.loads(w.stdout)["Arn"]
        self.assertIn(f"assumed-role/{DEPLOY}/opsline-", ours)
        self.assertEqual(os.listdir(self.cache_dir()), cached)
        path = os.path.join(self.cache_dir(), cached[0])
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(self.cache_dir()).st_mode & 0o777, 0o700)
        self.assertEqual(
            self.aws_cli("sts", "get-caller-identity", "--profile", "deploy", env=env)["Arn"],
            ours)
        # A session about to expire (botocore's 15-minute window) is not used: a new one is
        # assumed and cached. The secret is in the cache file only, never in opsline's output.
        with open(path) as f:
            doc = json.load(f)
        doc["Credentials"]["Expiration"] = time.strftime(
            "%Y-%m-%dT%H:%M:%SUTC", time.gmtime(time.time() + 600))
        with open(path, "w") as f:
            json.dump(doc, f)
        PROXY.configure()
        w = opsline("whoami", "--json", "--profile", "deploy",
                    env=self.env(AWS_ENDPOINT_URL=PROXY.url))
        self.assertEqual(w.returncode, 0, w.stderr)
        self.assertEqual(len([e for e in PROXY.requests() if e.get("action") == "AssumeRole"]), 1)
        with open(path) as f:
            fresh = json.load(f)["Credentials"]
        self.assertNotEqual(fresh["AccessKeyId"], doc["Credentials"]["AccessKeyId"])
        self.assert_nothing_leaked(w, extra=(fresh["SecretAccessKey"], fresh["SessionToken"]))

    def test_a_role_chain_loop_is_refused_before_any_request(self):
        self.write_config(f"[profile a]\nrole_arn = {role_arn(DEPLOY)}\nsource_profile = b\n"
                          f"[profile b]\nrole_arn = {role_arn(DEPLOY)}\nsource_profile = a\n")
        PROXY.configure()
        r = self.apply(self.product(), self.env(AWS_ENDPOINT_URL=PROXY.url), "--profile", "a")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("loop", r.stderr)
        self.assertEqual(PROXY.requests(), [])

    def test_a_role_the_source_may_not_assume_fails_before_any_write(self):
        self.write_config(f"[profile ci]\nrole_arn = {role_arn(CI)}\nsource_profile = dev\n")
        product = self.product()
        r = self.apply(product, self.env(), "--profile", "ci")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(role_arn(CI), r.stderr)
        self.assertIn("AccessDenied", r.stderr)
        self.assertIn("Nothing was created", r.stderr)
        users = [u["UserName"] for u in client("iam").list_users()["Users"]]
        self.assertNotIn(f"{product}-production", users)
        self.assert_nothing_leaked(r)

    # ---- web identity -------------------------------------------------------------------

    def sts_front(self):
        front = credservers.StsFront(ENDPOINT, KEY, SECRET, WEB_TOKEN)
        self.servers.append(front)
        token_file = os.path.join(self.work, "oidc-token")
        with open(token_file, "w") as f:
            f.write(WEB_TOKEN + "\n")
        return front, token_file

    def test_web_identity_profile_applies_as_the_role(self):
        front, token_file = self.sts_front()
        self.write_config(f"[profile ci]\nrole_arn = {role_arn(CI)}\n"
                          f"web_identity_token_file = {token_file}\n"
                          f"role_session_name = gha-run\n")
        self.assert_applied_as(self.product(), self.env(AWS_ENDPOINT_URL_STS=front.url),
                               f"arn:aws:sts::{ACCOUNT}:assumed-role/{CI}/gha-run",
                               "--profile", "ci")
        self.assertGreaterEqual(front.web_identity_calls, 1)

    def test_web_identity_from_aws_role_arn_applies_as_the_role(self):
        front, token_file = self.sts_front()
        self.write_config("")
        env = self.env(AWS_ENDPOINT_URL_STS=front.url, AWS_ROLE_ARN=role_arn(CI),
                       AWS_WEB_IDENTITY_TOKEN_FILE=token_file)
        self.assert_applied_as(self.product(), env, f"arn:aws:sts::{ACCOUNT}:assumed-role/{CI}/")

    def test_web_identity_token_file_through_links_applies_and_a_fifo_is_refused(self):
        # EKS projects the token through links (token -> ..data/token -> ..2024_01/token).
        front, token_file = self.sts_front()
        layout = os.path.join(self.home, "serviceaccount")
        os.makedirs(os.path.join(layout, "..2024_01"))
        os.rename(token_file, os.path.join(layout, "..2024_01", "token"))
        os.symlink("..2024_01", os.path.join(layout, "..data"))
        os.symlink(os.path.join("..data", "token"), os.path.join(layout, "token"))
        env = self.env(AWS_ENDPOINT_URL_STS=front.url, AWS_ROLE_ARN=role_arn(CI),
                       AWS_WEB_IDENTITY_TOKEN_FILE=os.path.join(layout, "token"))
        self.write_config("")
        self.assert_applied_as(self.product(), env, f"arn:aws:sts::{ACCOUNT}:assumed-role/{CI}/")
        # A FIFO in its place (nobody writes to it) is refused at once, not waited on.
        fifo = os.path.join(self.home, "token.fifo")
        os.mkfifo(fifo)
        env["AWS_WEB_IDENTITY_TOKEN_FILE"] = fifo
        calls = front.web_identity_calls
        w = opsline("whoami", env=env, timeout=60)
        self.assertNotEqual(w.returncode, 0, w.stdout)
        self.assertIn(fifo, w.stderr)
        self.assertIn("FIFO", w.stderr)
        self.assertEqual(front.web_identity_calls, calls)

    # ---- IAM Identity Center ------------------------------------------------------------

    def sso_setup(self, expires_in):
        minter = credservers.Minter(ENDPOINT, KEY, SECRET, rotate_users=SSO_USERS)
        portal = credservers.SsoPortal(minter, SSO_TOKEN, ACCOUNT, "Deployer")
        self.servers.append(portal)
        self.write_config("[profile corp]\nsso_session = corp\nsso_account_id = " + ACCOUNT +
                          "\nsso_role_name = Deployer\nregion = " + REGION + "\n"
                          "[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\n"
                          "sso_region = eu-west-1\nsso_registration_scopes = sso:account:access\n")
        cache = os.path.join(self.home, ".aws", "sso", "cache")
        os.makedirs(cache, exist_ok=True)
        with open(os.path.join(cache, hashlib.sha1(b"corp").hexdigest() + ".json"), "w") as f:
            json.dump({"startUrl": "https://corp.awsapps.com/start", "region": "eu-west-1",
                       "accessToken": SSO_TOKEN,
                       "expiresAt": credservers.iso(time.time() + expires_in)}, f)
        return minter, portal

    def test_sso_with_a_valid_cached_token_applies(self):
        minter, portal = self.sso_setup(3600)
        env = self.env(AWS_ENDPOINT_URL_SSO=portal.url)
        self.assert_applied_as(self.product(), env, f"arn:aws:iam::{ACCOUNT}:user/{TAG}-sso",
                               "--profile", "corp", extra_secrets=minter.secrets())
        minter.stop()

    def test_sso_with_an_expired_token_says_which_command_to_run(self):
        minter, portal = self.sso_setup(-60)
        PROXY.configure()
        r = self.apply(self.product(), self.env(AWS_ENDPOINT_URL_SSO=portal.url,
                                                AWS_ENDPOINT_URL=PROXY.url), "--profile", "corp")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("aws sso login --profile corp", r.stderr)
        self.assertIn("expired", r.stderr)
        self.assertEqual(portal.requests, [])
        self.assertEqual(PROXY.requests(), [])
        self.assert_nothing_leaked(r)

    # ---- container and instance credentials ---------------------------------------------

    def test_container_credentials_with_an_authorization_token_file(self):
        minter = credservers.Minter(ENDPOINT, KEY, SECRET, rotate_users=TASK_USERS)
        ep = credservers.ContainerEndpoint(minter, auth_token=CONTAINER_TOKEN)
        self.servers.append(ep)
        token_file = os.path.join(self.work, "eks-token")
        with open(token_file, "w") as f:
            f.write(CONTAINER_TOKEN)
        self.write_config("")
        env = self.env(AWS_CONTAINER_CREDENTIALS_FULL_URI=ep.full_uri,
                       AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=token_file)
        self.assert_applied_as(self.product(), env, f"arn:aws:iam::{ACCOUNT}:user/{TAG}-task",
                               extra_secrets=minter.secrets())
        self.assertTrue(all(h.get("Authorization") == CONTAINER_TOKEN
                            for _, _, h in ep.requests))
        minter.stop()

    def test_instance_credentials_through_imdsv2(self):
        minter = credservers.Minter(ENDPOINT, KEY, SECRET, rotate_users=INSTANCE_USERS)
        imds = credservers.Imds(minter)
        self.servers.append(imds)
        self.write_config("")
        env = self.env(AWS_EC2_METADATA_DISABLED=None, AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url)
        self.assert_applied_as(self.product(), env, f"arn:aws:iam::{ACCOUNT}:user/{TAG}-inst",
                               extra_secrets=minter.secrets())
        self.assertEqual(imds.requests[0][0:2], ("PUT", "/latest/api/token"))
        minter.stop()

    def test_imdsv1_only_answers_are_refused(self):
        minter = credservers.Minter(ENDPOINT, KEY, SECRET, rotate_users=INSTANCE_USERS)
        imds = credservers.Imds(minter, v1_only=True)
        self.servers.append(imds)
        self.write_config("")
        env = self.env(AWS_EC2_METADATA_DISABLED=None, AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url)
        r = self.apply(self.product(), env)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("IMDSv2", r.stderr)
        self.assertEqual(minter.handed, [])  # the credentials document was never asked for
        self.assertEqual([m for m, _, _ in imds.requests], ["PUT"])

    # ---- refresh ------------------------------------------------------------------------

    def test_credentials_expiring_mid_run_are_refreshed_and_the_batch_finishes(self):
        """The container stand-in hands out keys announced to live LIFETIME s, each deleted
        from moto GRACE s after that: a client that kept one longer would be refused. The
        proxy's latency makes the batch last several lifetimes."""
        lifetime, grace = 5, 2
        minter = credservers.Minter(ENDPOINT, KEY, SECRET, rotate_users=ROTATE_USERS,
                                    lifetime=lifetime, grace=grace)
        ep = credservers.ContainerEndpoint(minter)
        self.servers.append(ep)
        # A new item is 3 round trips deep: 32 items, 2 at a time, 250 ms each is about 12 s,
        # more than two lifetimes.
        PROXY.configure(latency_ms=250)
        self.write_config("")
        products = [f"{TAG}ref{i}" for i in range(32)]
        env = self.env(AWS_CONTAINER_CREDENTIALS_FULL_URI=ep.full_uri, AWS_ENDPOINT_URL=PROXY.url)
        start = time.time()
        r = opsline("apply", *products, "-e", "production", "--concurrency", "2", "--json",
                    "--state-dir", os.path.join(self.work, "state"), cwd=self.work, env=env,
                    timeout=280)
        elapsed = time.time() - start
        self.assertEqual(r.returncode, 0, r.stdout[-2000:] + r.stderr[-2000:])
        report = json.loads(r.stdout)
        failed = [i for i in report.get("items", []) if i.get("status") == "failed"]
        self.assertEqual(failed, [])
        # The run outlived the first key (deleted at lifetime + grace): without a refresh its
        # later requests would have been refused.
        self.assertGreater(elapsed, lifetime + grace, "the batch was too short to prove it")
        self.assertGreaterEqual(len(minter.handed), 1 + int(elapsed // lifetime) - 1)
        self.assertGreaterEqual(len(minter.deleted), 1)
        for p in products:
            client("s3").head_bucket(Bucket=f"{p}-production")
        self.assert_nothing_leaked(r, minter.secrets())
        minter.stop()

    # ---- credential_process -------------------------------------------------------------

    def test_a_hanging_credential_process_fails_after_its_timeout_naming_it(self):
        script = os.path.join(self.work, "hang.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\nsleep 120\n")
        os.chmod(script, 0o700)
        self.write_config(f"[profile hang]\ncredential_process = {script}\n")
        PROXY.configure()
        r = self.apply(self.product(), self.env(OPSLINE_CREDENTIAL_TIMEOUT="2",
                                                AWS_ENDPOINT_URL=PROXY.url), "--profile", "hang")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("credential_process of profile 'hang'", r.stderr)
        self.assertIn("did not finish within 2 s", r.stderr)
        self.assertEqual(PROXY.requests(), [])

    # ---- one account per environment ----------------------------------------------------

    def test_two_environments_mapped_to_two_profiles_use_two_identities(self):
        self.write_config(f"[profile prod]\nrole_arn = {role_arn(DEPLOY)}\nsource_profile = dev\n"
                          f"role_session_name = prod-session\n"
                          f"[profile stage]\nrole_arn = {role_arn(STAGE)}\nsource_profile = dev\n"
                          f"role_session_name = stage-session\n")
        product = self.product()
        mapping = "production=prod,staging=stage"
        r = self.apply(product, self.env(), "--profile", mapping, envs="production,staging")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        prod_arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/{DEPLOY}/prod-session"
        stage_arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/{STAGE}/stage-session"
        self.assertIn(f"acting as {prod_arn} for production", r.stderr)
        self.assertIn(f"acting as {stage_arn} for staging", r.stderr)
        for e in ("production", "staging"):
            client("s3").head_bucket(Bucket=f"{product}-{e}")
        w = opsline("whoami", "--json", "--profile", mapping, env=self.env())
        self.assertEqual(w.returncode, 0, w.stderr)
        self.assertEqual({i["Environment"]: i["Arn"] for i in json.loads(w.stdout)},
                         {"production": prod_arn, "staging": stage_arn})
        self.assert_nothing_leaked(r)
        # The staging items really go out under staging's identity: map it to the source
        # user, which may not write, and only staging fails.
        product = self.product()
        r = self.apply(product, self.env(), "--profile", "production=prod,staging=dev",
                       envs="production,staging")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        client("s3").head_bucket(Bucket=f"{product}-production")
        with self.assertRaises(ClientError):
            client("s3").head_bucket(Bucket=f"{product}-staging")

    def test_the_pipeline_file_maps_environments_to_profiles(self):
        self.write_config(f"[profile prod]\nrole_arn = {role_arn(DEPLOY)}\nsource_profile = dev\n"
                          f"role_session_name = file-session\n")
        pipeline = os.path.join(self.work, "pipeline.json")
        with open(pipeline, "w") as f:
            json.dump({"stages": ["bucket", "iam", "policy", "dotenv"],
                       "environments": ["production"], "profiles": {"production": "prod"},
                       "regions": {"production": REGION}}, f)
        product = self.product()
        r = self.apply(product, self.env(), "--pipeline", pipeline)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"assumed-role/{DEPLOY}/file-session for production", r.stderr)
        w = opsline("whoami", "--json", "--pipeline", pipeline, env=self.env())
        self.assertEqual(w.returncode, 0, w.stderr)
        self.assertEqual([(i["Environment"], i["Arn"]) for i in json.loads(w.stdout)],
                         [("production",
                           f"arn:aws:sts::{ACCOUNT}:assumed-role/{DEPLOY}/file-session")])
        bad = self.apply(product, self.env(), "--profile", "prodution=prod")
        self.assertEqual(bad.returncode, 2, bad.stderr)
        self.assertIn("'prodution' is not an environment of this run", bad.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
