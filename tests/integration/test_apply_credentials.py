#!/usr/bin/env python3
"""Temporary credentials end to end: an assumed role's key, secret and session token (from
moto's STS, which checks the token) given to opsline in AWS_SESSION_TOKEN or by a
credential_process, with the token seen on the wire by the fault proxy and the results read
back with boto3. Run through run.sh.
"""
import json
import os
import stat
import sys
import tempfile
import unittest

from opsline_it import Proxy, base_env, client, opsline, read_env

PROXY = Proxy()
ACCOUNT = "123456789012"
ROLE = f"opsline-it-role-{os.getpid()}"


def setUpModule():
    PROXY.start()
    iam = client("iam")
    # moto checks the trust policy's principal against the caller: name the admin user.
    iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/admin"},
            "Action": "sts:AssumeRole"}]}))
    iam.put_role_policy(RoleName=ROLE, PolicyName="all", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))


tearDownModule = PROXY.stop


def assume_role():
    creds = client("sts").assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{ROLE}",
                                      RoleSessionName="opsline-it")["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA"), creds["AccessKeyId"]
    return creds


class TemporaryCredentialsTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="opsline-it-creds.")
        self.creds = assume_role()
        PROXY.configure()

    def env(self, **extra):
        return base_env(AWS_ENDPOINT_URL=PROXY.url, **extra)

    def token_env(self, **extra):
        c = self.creds
        return self.env(AWS_ACCESS_KEY_ID=c["AccessKeyId"],
                        AWS_SECRET_ACCESS_KEY=c["SecretAccessKey"],
                        AWS_SESSION_TOKEN=c["SessionToken"], **extra)

    def assert_every_request_carried_the_token(self, at_least):
        log = PROXY.requests()
        self.assertGreaterEqual(len(log), at_least)
        self.assertEqual([e for e in log if not e["security_token"]], [])

    def assert_applied(self, item, r):
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for secret in (self.creds["SecretAccessKey"], self.creds["SessionToken"]):
            self.assertNotIn(secret, r.stdout + r.stderr)
        v = read_env(os.path.join(self.work, f"{item}.env"))
        keys = client("iam").list_access_keys(UserName=item)["AccessKeyMetadata"]
        self.assertEqual([k["AccessKeyId"] for k in keys], [v["AWS_ACCESS_KEY_ID"]])
        own = client("s3", v["AWS_ACCESS_KEY_ID"], v["AWS_SECRET_ACCESS_KEY"])
        own.put_object(Bucket=item, Key="k", Body=b"x")
        # The stored key is the user's own, not the temporary one.
        self.assertNotEqual(v["AWS_ACCESS_KEY_ID"], self.creds["AccessKeyId"])
        self.assertNotIn("AWS_SESSION_TOKEN", v)

    def test_whoami_with_a_session_token_is_the_assumed_role(self):
        r = opsline("whoami", "--json", env=self.token_env())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["Arn"],
                         f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/opsline-it")
        self.assert_every_request_carried_the_token(1)

    def test_apply_with_a_session_token_sends_it_on_every_request(self):
        item = f"tok{os.getpid()}-production"
        r = opsline("apply", f"tok{os.getpid()}", "-e", "production", cwd=self.work,
                    env=self.token_env())
        self.assert_applied(item, r)
        log = PROXY.requests()
        self.assertEqual({e["service"] for e in log}, {"sts", "s3", "iam"})
        self.assert_every_request_carried_the_token(8)  # STS, then the 7 writes of a new item

    def test_a_missing_or_wrong_session_token_is_rejected_without_printing_secrets(self):
        c = self.creds
        for token in (None, "not-the-token"):
            with self.subTest(token=token):
                r = opsline("apply", f"notok{os.getpid()}", "-e", "production", cwd=self.work,
                            env=self.env(AWS_ACCESS_KEY_ID=c["AccessKeyId"],
                                         AWS_SECRET_ACCESS_KEY=c["SecretAccessKey"],
                                         AWS_SESSION_TOKEN=token))
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertIn("InvalidClientTokenId", r.stderr)
                self.assertNotIn(c["SecretAccessKey"], r.stdout + r.stderr)
        users = [u["UserName"] for u in client("iam").list_users()["Users"]]
        self.assertNotIn(f"notok{os.getpid()}-production", users)

    # ---- credential_process -----------------------------------------------------------------

    def write_profile(self, output, exit_code=0):
        """A profile 'cp' whose credential_process prints output and exits exit_code."""
        script = os.path.join(self.work, "creds.py")
        with open(script, "w") as f:
            f.write(f"import sys\nsys.stdout.write({output!r})\nsys.exit({exit_code})\n")
        os.chmod(script, stat.S_IRWXU)
        config = os.path.join(self.work, "config")
        with open(config, "w") as f:
            f.write(f"[profile cp]\nregion = eu-north-1\n"
                    f"credential_process = {sys.executable} {script}\n")
        return config

    def process_env(self, config):
        return self.env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None, AWS_PROFILE="cp",
                        AWS_CONFIG_FILE=config)

    def test_apply_with_credential_process_uses_its_temporary_credentials(self):
        c = self.creds
        config = self.write_profile(json.dumps({
            "Version": 1, "AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"],
            "SessionToken": c["SessionToken"], "Expiration": c["Expiration"].isoformat()}))
        r = opsline("whoami", "--json", env=self.process_env(config))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["Arn"],
                         f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/opsline-it")
        PROXY.configure()
        item = f"cp{os.getpid()}-production"
        r = opsline("apply", f"cp{os.getpid()}", "-e", "production", cwd=self.work,
                    env=self.process_env(config))
        self.assert_applied(item, r)
        self.assert_every_request_carried_the_token(8)  # STS, then the 7 writes of a new item

    def test_a_failing_credential_process_stops_before_any_request(self):
        c = self.creds
        for output, code in ((json.dumps({"Version": 1, "AccessKeyId": c["AccessKeyId"],
                                          "SecretAccessKey": c["SecretAccessKey"]}), 3),
                             ("not json " + c["SecretAccessKey"], 0),
                             (json.dumps({"Version": 2, "AccessKeyId": c["AccessKeyId"],
                                          "SecretAccessKey": c["SecretAccessKey"]}), 0)):
            with self.subTest(output=output[:20], code=code):
                PROXY.configure()
                config = self.write_profile(output, code)
                r = opsline("apply", f"cpfail{os.getpid()}", "-e", "production", cwd=self.work,
                            env=self.process_env(config))
                self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertIn("credential_process", r.stderr)
                self.assertNotIn(c["SecretAccessKey"], r.stdout + r.stderr)
                self.assertEqual(PROXY.requests(), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
