#!/usr/bin/env python3
"""End-to-end tests of the aws-secretsmanager secret store against moto with signatures and
IAM policies enforced. Everything opsline stored is read back with boto3 (an independent
client) and the key read back is used: it must work on its own bucket and be denied on the
other.

usage: test_secrets_secretsmanager.py  (env: OPSLINE=path/to/opsline, OPSLINE_BUILD_DIR)
"""
import json
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import faultproxy  # noqa: E402
from opsline_e2e import REGION, MotoTestCase, read_env  # noqa: E402

from botocore.exceptions import ClientError  # noqa: E402

ENVS = ("production", "staging")
STORES = "dotenv,aws-secretsmanager"


class SecretsManagerStoreTest(MotoTestCase):
    moto_prefix = "opsline-e2e-sm-moto."
    work_prefix = "opsline-e2e-sm-work."
    opsline_timeout = 120

    def tearDown(self):
        secrets = self.known_secrets()
        for text in self.outputs:
            for s in secrets:
                self.assertNotIn(s, text, "a secret access key appeared in opsline's output")

    # ---- helpers ---------------------------------------------------------------------------

    def opsline(self, *args, key=None, extra=None, timeout=None):
        """opsline with key (the admin's by default) and extra in its environment."""
        return super().opsline(*args, env=self.env(key=key, **(extra or {})), timeout=timeout)

    def secret_value(self, secret_id):
        sm = self.client("secretsmanager")
        return json.loads(sm.get_secret_value(SecretId=secret_id)["SecretString"])

    def versions(self, secret_id):
        sm = self.client("secretsmanager")
        return sorted(v["VersionId"] for v in
                      sm.list_secret_version_ids(SecretId=secret_id)["Versions"])

    def secrets_named(self, name):
        sm = self.client("secretsmanager")
        found = sm.list_secrets(Filters=[{"Key": "name", "Values": [name]}])["SecretList"]
        return [s["Name"] for s in found if s["Name"] == name]

    def dotenv(self, bucket):
        return self.env_file(bucket)

    def known_secrets(self):
        found = set()
        for name in os.listdir(self.work):
            if name.endswith(".env"):
                v = read_env(os.path.join(self.work, name)).get("AWS_SECRET_ACCESS_KEY")
                if v:
                    found.add(v)
        sm = self.client("secretsmanager")
        for page in sm.get_paginator("list_secrets").paginate():
            for s in page["SecretList"]:
                try:
                    v = json.loads(sm.get_secret_value(SecretId=s["ARN"])["SecretString"])
                except (ClientError, ValueError):
                    continue
                if isinstance(v, dict) and v.get("aws_secret_access_key"):
                    found.add(v["aws_secret_access_key"])
        return found

    def assert_key_works_only_on_its_bucket(self, key, bucket, other):
        self.assert_key_works_only_on(key, bucket, other)

    def assert_secret_holds_the_working_key(self, product, secret_id_fmt="opsline/{bucket}"):
        for env, other in (("production", "staging"), ("staging", "production")):
            bucket, other_bucket = f"{product}-{env}", f"{product}-{other}"
            secret_id = secret_id_fmt.format(bucket=bucket, product=product, environment=env)
            value = self.secret_value(secret_id)
            self.assertEqual(value["bucket"], bucket)
            self.assertEqual(value["region"], REGION)
            self.assertEqual(self.keys_of(bucket), [value["aws_access_key_id"]])
            dot = self.dotenv(bucket)
            self.assertEqual(dot["AWS_ACCESS_KEY_ID"], value["aws_access_key_id"])
            self.assertEqual(dot["AWS_SECRET_ACCESS_KEY"], value["aws_secret_access_key"])
            self.assert_key_works_only_on_its_bucket(
                (value["aws_access_key_id"], value["aws_secret_access_key"]), bucket,
                other_bucket)

    def apply_flaky_with_one_answer_cut(self, body_contains):
        """apply flaky -e production (exit 0) with Secrets Manager behind a fault proxy that
        cuts in half the answer to the first request whose body holds body_contains."""
        rule = {"fault": "truncate", "first_n": 1, "service": "secretsmanager",
                "body_contains": body_contains}
        with faultproxy.ProxyProcess(self.endpoint) as proxy:
            proxy.configure(rules=[rule])
            r = self.opsline("apply", "flaky", "-e", "production", "--secrets", STORES,
                             extra={"AWS_ENDPOINT_URL_SECRETS_MANAGER": proxy.url})
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            stats = proxy.stats()
        self.assertEqual(stats["faulted"]["truncate"], 1, stats)

    # ---- tests -----------------------------------------------------------------------------

    def test_apply_stores_both_keys_and_a_rerun_writes_no_new_version(self):
        self.apply_ok("acme", "--secrets", STORES, "-v")
        self.assert_secret_holds_the_working_key("acme")
        sm = self.client("secretsmanager")
        desc = sm.describe_secret(SecretId="opsline/acme-production")
        self.assertIn("acme-production", desc.get("Description", ""))

        ids = {e: self.versions(f"opsline/acme-{e}") for e in ENVS}
        keys = {e: self.keys_of(f"acme-{e}") for e in ENVS}
        for e in ENVS:
            self.assertEqual(len(ids[e]), 1)
        r = self.apply_ok("acme", "--secrets", STORES, "--json", "-v")
        report = json.loads(r.stdout)
        self.assertEqual(report["summary"]["created"], 0, r.stdout)
        for e in ENVS:
            self.assertEqual(self.versions(f"opsline/acme-{e}"), ids[e])
            self.assertEqual(self.keys_of(f"acme-{e}"), keys[e])
        self.assert_secret_holds_the_working_key("acme")

    def test_tags_and_a_custom_name_template(self):
        self.apply_ok("tagged", "--secrets", STORES,
                      "--set", "aws-secretsmanager.name=teams/{product}/{environment}",
                      "--set", "aws-secretsmanager.tags=team=data,cost-center=42")
        self.assert_secret_holds_the_working_key("tagged", "teams/{product}/{environment}")
        sm = self.client("secretsmanager")
        for env in ENVS:
            tags = sm.describe_secret(SecretId=f"teams/tagged/{env}").get("Tags", [])
            self.assertEqual({t["Key"]: t["Value"] for t in tags},
                             {"team": "data", "cost-center": "42"})
            self.assertEqual(self.secrets_named(f"opsline/tagged-{env}"), [])

    def test_a_pipeline_file_sets_the_kms_key_and_tags(self):
        kms_key = self.client("kms").create_key(Description="opsline test")["KeyMetadata"]["KeyId"]
        pipeline = {
            "stages": ["bucket", "iam", "policy",
                       {"stage": "aws-secretsmanager",
                        "options": {"name": "piped/{bucket}", "kms_key_id": kms_key,
                                    "tags": {"team": "data", "managed-by": "opsline"}}}],
            "secrets": ["dotenv", "aws-secretsmanager"],
        }
        path = os.path.join(self.work, "pipeline.json")
        with open(path, "w") as f:
            json.dump(pipeline, f)
        self.apply_ok("piped", "--pipeline", path)
        self.assert_secret_holds_the_working_key("piped", "piped/{bucket}")
        sm = self.client("secretsmanager")
        for env in ENVS:
            desc = sm.describe_secret(SecretId=f"piped/piped-{env}")
            self.assertEqual(desc.get("KmsKeyId"), kms_key)
            self.assertEqual({t["Key"]: t["Value"] for t in desc.get("Tags", [])},
                             {"team": "data", "managed-by": "opsline"})

    def test_bad_options_stop_the_run_before_any_request(self):
        cases = [("name=opsline/{product} {environment}", "opsline/p e"),
                 ("name=opsline/{prodct}", "{prodct}"),
                 ("tags=aws:owner=me", "aws:"),
                 ("recovery_days=3", "recovery_days")]
        for setting, expect in cases:
            with self.subTest(setting=setting):
                r = self.opsline("apply", "badopt", "--secrets", STORES,
                                 "--set", "aws-secretsmanager." + setting)
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                self.assertIn("aws-secretsmanager: ", r.stderr)
                self.assertIn(expect, r.stderr)
        with self.assertRaises(ClientError):
            self.client("iam").get_user(UserName="badopt-production")

    def test_a_replaced_key_updates_the_secret_and_never_duplicates_it(self):
        self.apply_ok("rot", "--secrets", STORES)
        name = "opsline/rot-production"
        old = self.secret_value(name)
        old_versions = self.versions(name)
        iam = self.client("iam")
        iam.delete_access_key(UserName="rot-production", AccessKeyId=old["aws_access_key_id"])
        os.unlink(os.path.join(self.work, "rot-production.env"))
        self.apply_ok("rot", "--secrets", STORES)

        new = self.secret_value(name)
        self.assertNotEqual(new["aws_access_key_id"], old["aws_access_key_id"])
        self.assertEqual(self.keys_of("rot-production"), [new["aws_access_key_id"]])
        self.assertEqual(self.secrets_named(name), [name])
        self.assertEqual(len(self.versions(name)), len(old_versions) + 1)
        self.assertEqual(self.dotenv("rot-production")["AWS_SECRET_ACCESS_KEY"],
                         new["aws_secret_access_key"])
        self.assert_secret_holds_the_working_key("rot")

    def test_adding_the_store_later_fills_it_without_a_new_key(self):
        self.apply_ok("later", "--secrets", "dotenv")
        keys = {e: self.keys_of(f"later-{e}") for e in ENVS}
        for e in ENVS:
            self.assertEqual(self.secrets_named(f"opsline/later-{e}"), [])
        self.apply_ok("later", "--secrets", STORES, "-v")
        for e in ENVS:
            self.assertEqual(self.keys_of(f"later-{e}"), keys[e])
        self.assert_secret_holds_the_working_key("later")

    def test_a_store_added_later_is_filled_from_secrets_manager_without_a_new_key(self):
        self.apply_ok("smfirst", "--secrets", "aws-secretsmanager")
        keys = {e: self.keys_of(f"smfirst-{e}") for e in ENVS}
        versions = {e: self.versions(f"opsline/smfirst-{e}") for e in ENVS}
        self.assertFalse(os.path.exists(os.path.join(self.work, "smfirst-production.env")))
        self.apply_ok("smfirst", "--secrets", STORES, "-v")
        for e in ENVS:
            self.assertEqual(self.keys_of(f"smfirst-{e}"), keys[e])
            self.assertEqual(self.versions(f"opsline/smfirst-{e}"), versions[e])
        self.assert_secret_holds_the_working_key("smfirst")

    def test_a_create_whose_answer_is_lost_is_resent_and_makes_one_version(self):
        # The proxy forwards the first CreateSecret to moto (which creates the secret) and
        # cuts its answer in half: the host resends it, and the ClientRequestToken makes
        # Secrets Manager recognise the resend.
        self.apply_flaky_with_one_answer_cut('"Name":"opsline/flaky-production"')
        self.assertEqual(len(self.versions("opsline/flaky-production")), 1)
        first = self.secret_value("opsline/flaky-production")
        self.assertEqual(self.keys_of("flaky-production"), [first["aws_access_key_id"]])

        # The same for the write of a replaced key: a resent PutSecretValue without the
        # token would add a second new version.
        self.client("iam").delete_access_key(UserName="flaky-production",
                                             AccessKeyId=first["aws_access_key_id"])
        os.unlink(os.path.join(self.work, "flaky-production.env"))
        self.apply_flaky_with_one_answer_cut('"SecretId":"opsline/flaky-production","')
        self.assertEqual(len(self.versions("opsline/flaky-production")), 2)
        value = self.secret_value("opsline/flaky-production")
        self.assertNotEqual(value["aws_access_key_id"], first["aws_access_key_id"])
        self.assertEqual(self.keys_of("flaky-production"), [value["aws_access_key_id"]])
        self.assertEqual(self.dotenv("flaky-production")["AWS_SECRET_ACCESS_KEY"],
                         value["aws_secret_access_key"])

    def test_a_denied_store_fails_the_item_naming_it_and_the_next_run_keeps_the_key(self):
        iam = self.client("iam")
        iam.create_user(UserName="no-sm")
        policy = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": "secretsmanager:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="no-sm", PolicyName="no-sm", PolicyDocument=json.dumps(policy))
        k = iam.create_access_key(UserName="no-sm")["AccessKey"]
        limited = (k["AccessKeyId"], k["SecretAccessKey"])

        r = self.opsline("apply", "denied", "-e", "production", "--secrets", STORES, key=limited)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("aws-secretsmanager", r.stdout + r.stderr)
        keys = self.keys_of("denied-production")
        self.assertEqual(len(keys), 1)
        self.assertEqual(self.dotenv("denied-production")["AWS_ACCESS_KEY_ID"], keys[0])

        self.apply_ok("denied", "-e", "production", "--secrets", STORES)
        self.assertEqual(self.keys_of("denied-production"), keys)
        value = self.secret_value("opsline/denied-production")
        self.assertEqual(value["aws_access_key_id"], keys[0])
        self.assertEqual(value["aws_secret_access_key"],
                         self.dotenv("denied-production")["AWS_SECRET_ACCESS_KEY"])

    def test_plugins_show_documents_every_option(self):
        r = self.opsline("plugins", "show", "aws-secretsmanager")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for opt in ("name", "kms_key_id", "tags", "region", "recovery_days", "description"):
            self.assertIn(opt, r.stdout)
        self.assertIn("opsline/{bucket}", r.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
