#!/usr/bin/env bash
# keepassxc store bench: N products (2N items) into one .kdbx, against the same run with
# dotenv alone; each run against a fresh moto (SigV4 + IAM enforced, tests/tools/moto_fixture.py)
# and in a fresh directory. Prints wall times, the ratio (target: at most 1.5), how many
# keepassxc-cli processes ran, and checks the database: it opens, it is KDBX 4, it lists
# every entry (`keepassxc-cli ls -R -f`), and each entry holds the key id and secret of the
# item's .env file. Not a ctest test. Figures: bench/keepassxc.md.
#
# usage: bench/keepassxc_bench.sh [BUILDDIR]     (default build; binary BUILDDIR/opsline)
# knobs: KX_BENCH_N (200 products), KX_BENCH_REPEAT (1; every run is printed, the ratio of
#        the medians too), KX_BENCH_CONCURRENCY (32, opsline --concurrency),
#        KX_BENCH_DECRYPT_MS (empty: opsline creates the database with keepassxc-cli's
#        default key derivation; a number: the database is made first with
#        `keepassxc-cli db-create -t MS`, the unlock time a KeePassXC user would choose),
#        KX_BENCH_KEEP (set: keep the runs' directories and logs in /tmp/opsline-kxbench.*).
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
opsline="$root/$build/opsline"
[ -x "$opsline" ] || opsline="$build/opsline"
if [ ! -x "$opsline" ]; then
  echo "keepassxc_bench: no opsline binary in $build" >&2
  exit 2
fi
if ! command -v keepassxc-cli >/dev/null; then
  echo "keepassxc_bench: keepassxc-cli not found: install keepassxc (apt-get install keepassxc)" >&2
  exit 2
fi
n=${KX_BENCH_N:-200}
repeat=${KX_BENCH_REPEAT:-1}
conc=${KX_BENCH_CONCURRENCY:-32}
decrypt_ms=${KX_BENCH_DECRYPT_MS:-}
password="bench password $$"

tmp=$(mktemp -d /tmp/opsline-kxbench.XXXXXX)
moto_state=""
cleanup() {
  [ -z "$moto_state" ] || python3 "$root/tests/tools/moto_fixture.py" stop --state-dir "$moto_state" >/dev/null 2>&1 || true
  [ -n "${KX_BENCH_KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT

# One run: fresh moto, fresh directory; prints "WALL KXRUNS" on stdout.
run_one() { # config index
  local config=$1 idx=$2
  local work="$tmp/$config.$idx"
  moto_state="$tmp/moto.$config.$idx"
  mkdir -p "$work" "$moto_state"
  python3 "$root/tests/tools/moto_fixture.py" start --state-dir "$moto_state" >/dev/null
  # shellcheck disable=SC1091
  (
    . "$moto_state/env"
    cd "$work"
    for i in $(seq -w 1 "$n"); do echo "kx$i"; done >products.txt
    local secrets=dotenv extra=()
    if [ "$config" = keepassxc ]; then
      secrets=dotenv,keepassxc
      extra=(--set keepassxc.database="$work/aws.kdbx")
      if [ -n "$decrypt_ms" ]; then
        printf '%s\n%s\n' "$password" "$password" |
          keepassxc-cli db-create -q -t "$decrypt_ms" -p aws.kdbx >/dev/null 2>&1
      else
        extra+=(--set keepassxc.create=true)
      fi
    fi
    local t0 t1
    t0=$(date +%s.%N)
    OPSLINE_KEEPASSXC_PASSWORD="$password" "$opsline" apply --products-file products.txt \
      --secrets "$secrets" --concurrency "$conc" "${extra[@]}" -v >run.log 2>&1 ||
      { echo "keepassxc_bench: $config run failed; see $work/run.log" >&2; tail -5 run.log >&2; exit 1; }
    t1=$(date +%s.%N)
    local kxruns
    kxruns=$(grep -c "running keepassxc-cli" run.log || true)
    echo "$(echo "$t1 - $t0" | bc) $kxruns"
  )
  python3 "$root/tests/tools/moto_fixture.py" stop --state-dir "$moto_state" >/dev/null 2>&1 || true
  moto_state=""
}

# The database: opens, KDBX 4, every entry listed, each entry equal to its .env.
check_db() { # work dir
  local work=$1
  python3 - "$work" "$n" "$password" <<'EOF'
import csv, io, os, subprocess, sys
work, n, password = sys.argv[1], int(sys.argv[2]), sys.argv[3]
db = os.path.join(work, "aws.kdbx")
def cli(*args):
    return subprocess.run(["keepassxc-cli", *args], input=password + "\n", capture_output=True,
                          text=True, check=True, env=dict(os.environ, LC_ALL="C.UTF-8")).stdout
info = cli("db-info", db)
with open(db, "rb") as f:
    head = f.read(12)
version = int.from_bytes(head[10:12], "little")
entries = [l for l in cli("ls", "-R", "-f", db).splitlines() if l and not l.endswith("/")]
rows = list(csv.DictReader(io.StringIO(cli("export", "-f", "csv", db))))
# Groups are listed from the root group, whose name varies: drop it.
by_path = {(r["Group"].partition("/")[2], r["Title"]): r for r in rows}
bad = 0
for i in range(1, n + 1):
    for env in ("production", "staging"):
        name = f"kx{i:0{len(str(n))}d}-{env}"
        vals = {}
        for line in open(os.path.join(work, f"{name}.env")):
            k, _, v = line.strip().partition("=")
            vals[k] = v
        r = by_path.get((f"AWS/{name.rsplit('-', 1)[0]}", name))
        if r is None or r["Username"] != vals["AWS_ACCESS_KEY_ID"] or \
                r["Password"] != vals["AWS_SECRET_ACCESS_KEY"]:
            bad += 1
kdf = next((l for l in info.splitlines() if l.startswith("KDF:")), "KDF: ?")
print(f"{len(entries)} {bad} {version} {os.stat(db).st_mode & 0o777:o} {kdf[5:].replace(' ', '_')}")
EOF
}

kdf_text="keepassxc-cli's default (opsline creates the database)"
[ -z "$decrypt_ms" ] || kdf_text="keepassxc-cli db-create -t $decrypt_ms (made before the run)"
echo "keepassxc bench: $n products ($((2 * n)) items), --concurrency $conc, $repeat run(s) each," \
  "KDF: $kdf_text, $(nproc) CPUs, load average $(cut -d' ' -f1 /proc/loadavg)"
declare -a d_walls k_walls
fail=0
for r in $(seq 1 "$repeat"); do
  read -r dw _ < <(run_one dotenv "$r")
  read -r kw kr < <(run_one keepassxc "$r")
  read -r entries bad version mode kdf < <(check_db "$tmp/keepassxc.$r")
  d_walls+=("$dw")
  k_walls+=("$kw")
  printf 'run %d: dotenv %.2f s, dotenv+keepassxc %.2f s (ratio %.2f), keepassxc-cli runs %d;' \
    "$r" "$dw" "$kw" "$(echo "$kw / $dw" | bc -l)" "$kr"
  printf ' database: %d entries, %d wrong, KDBX %d, mode %s, KDF %s\n' \
    "$entries" "$bad" "$version" "$mode" "$kdf"
  if [ "$entries" -ne $((2 * n)) ] || [ "$bad" -ne 0 ] || [ "$version" -ne 4 ]; then fail=1; fi
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
dm=$(median "${d_walls[@]}")
km=$(median "${k_walls[@]}")
ratio=$(echo "$km / $dm" | bc -l)
printf 'median: dotenv %.2f s, dotenv+keepassxc %.2f s, ratio %.2f (target <= 1.5)\n' "$dm" "$km" "$ratio"
[ "$fail" -eq 0 ] || { echo "keepassxc_bench: the database did not check out" >&2; exit 1; }
