#!/usr/bin/env bash
# run.sh --proxy: the command talks to moto through a fault proxy configured by flags.
set -euo pipefail
out="$(./run.sh --proxy "--fault throttling:first_n=1,service=sts" bash -c '
    test "$AWS_ENDPOINT_URL" = "$FAULTPROXY_URL"
    test "$AWS_ENDPOINT_URL" != "$MOTO_ENDPOINT_URL"
    # The one throttled request is retried by the CLI, then it succeeds.
    aws sts get-caller-identity --query Arn --output text
    curl -sf "$FAULTPROXY_URL/__proxy/stats"
')"
echo "$out"
grep -q ':user/admin$' <<<"$out"
python3 -c 'import json, sys
stats = json.loads(sys.argv[1].split("\n", 1)[1])
assert stats["faulted"]["throttling"] == 1, stats
assert stats["forwarded"] == 1, stats' "$out"
echo "run.sh --proxy: ok"
