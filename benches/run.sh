#!/usr/bin/env bash
# kaspec's benchmark (issue 17): how long a run takes against its longest
# unit, how long servers take to start, and how long a fault takes to be in
# force. Needs root (network namespaces), like `kaspec run`.
#
#   benches/run.sh                  # the default matrix (all cases × blackhole, reset)
#   benches/run.sh tcp/ mqtt/       # a prefix (or several) instead
#   JOBS="1 8" benches/run.sh       # once per --jobs value (default: kaspec's default)
#   benches/run.sh --faults-only    # only the fault-apply latency
#   APPLICATIONS=500 benches/run.sh --faults-only
#
# Prints, per run: its wall time, its longest unit (case × fault), their
# ratio, the units run again alone (starved of CPU beside the others), the
# results' largest wake-up term and budget, each server's start time (spawn
# → accepting connections), the target
# wall ≤ 1.5 × (longest unit + slowest server start), and the fault-apply
# latency (request → in force) p50/p99 over APPLICATIONS (default 200)
# applications of a blackhole (one nf_tables batch on the router's netlink
# socket, acked after the commit), next to what spawning `ip netns exec …
# nft`, the way faults were applied before, costs on its own (target: p99
# ≤ 5 ms). Builds in the cargo profile PROFILE (default dev, the one
# `cargo test` uses).
set -euo pipefail
cd "$(dirname "$0")/.."
APPLICATIONS=${APPLICATIONS:-200}
JOBS=${JOBS:-}
PROFILE=${PROFILE:-dev}
faults_only=0
prefixes=()
for a in "$@"; do
    case "$a" in
        --faults-only) faults_only=1 ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "benches/run.sh: unknown option $a (allowed: --faults-only, case-id prefixes)" >&2; exit 2 ;;
        *) prefixes+=("$a") ;;
    esac
done
target=${CARGO_TARGET_DIR:-target}
dir=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
cargo build -q --profile "$PROFILE" --bin kaspec -p kaspec
cargo build -q --profile "$PROFILE" -p kaspec-harness --example fault_latency
kaspec="$target/$dir/kaspec"
work=$(mktemp -d /tmp/kaspec-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "kaspec benchmark — $(nproc) CPUs, kernel $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"
if [ "$faults_only" = 0 ]; then
  what=${prefixes[*]:-the default matrix}
  for jobs in ${JOBS:-default}; do
    jobs_arg=()
    [ "$jobs" = default ] || jobs_arg=(--jobs "$jobs")
    echo
    echo "== run: $what, --jobs $jobs =="
    rm -f "$work/timings"
    start=$(date +%s%N)
    set +e
    KASPEC_TIMINGS="$work/timings" "$kaspec" run "${prefixes[@]}" "${jobs_arg[@]}" --out "$work/run-$jobs" >"$work/stdout" 2>"$work/progress"
    status=$?
    set -e
    wall_ms=$(( ($(date +%s%N) - start) / 1000000 ))
    [ "$status" -le 1 ] || echo "(the run exited with $status: see its harness errors; the times below still stand)"
    head -1 "$work/progress"
    # Units: the progress lines `[ i/n] CASE × FAULT done in 4.57 s` (or `850 ms`).
    awk -v wall="$wall_ms" -v timings="$work/timings" '
        / done in / {
            n = split($0, w, " "); v = w[n-1]; unit = w[n];
            ms = (unit == "s") ? v * 1000 : v;
            sub(/^\[ *[0-9]+\/[0-9]+\] /, ""); sub(/ done in .*/, "");
            units++; sum += ms;
            if (ms > longest) { longest = ms; which = $0 }
        }
        / starved of CPU / { starved++ }
        END {
            while ((getline line < timings) > 0) {
                split(line, f, " "); name = f[2]; t = f[3];
                cnt[name]++; tot[name] += t; if (t > mx[name]) mx[name] = t;
                if (t > slowest) { slowest = t; slow_name = name }
            }
            printf "wall time            %.1f s (%d unit runs, %.1f s in units: %.1f× concurrency)\n", wall / 1000, units, sum / 1000, (wall > 0) ? sum / wall : 0;
            printf "longest unit         %.1f s  %s\n", longest / 1000, which;
            printf "wall / longest unit  %.1f×\n", (longest > 0) ? wall / longest : 0;
            printf "starved, run again alone: %d\n", starved;
            print "server starts (spawn → accepting connections):";
            for (s in cnt) printf "  %-28s %3d× mean %5d ms  max %5d ms\n", s, cnt[s], tot[s] / cnt[s], mx[s];
            bound = 1.5 * (longest + slowest);
            printf "target: wall ≤ 1.5 × (longest unit + slowest server start) = %.1f s → %s (%.2f× the bound)\n",
                bound / 1000, (wall <= bound) ? "met" : "NOT met", wall / bound;
        }' "$work/progress"
    # The results' error terms: do they grow with --jobs?
    python3 - "$work/run-$jobs/report.json" <<'PY' 2>/dev/null || true
import json, sys
r = json.load(open(sys.argv[1]))
res = [x for x in r["results"] if x["verdict"] != "unsupported"]
if res:
    pick = lambda k: sorted(k(x) for x in res)
    w = pick(lambda x: x["budget"].get("wake_ms", 0))
    a = pick(lambda x: x["budget"]["fault_commit_ms"] + x["budget"]["observer_ms"] + x["budget"].get("wake_ms", 0))
    q = lambda v, p: v[min(len(v) - 1, int(len(v) * p))]
    print(f"budgets ({len(res)} results): wake-up term p50 {q(w, .5)} max {w[-1]} ms; allowance p50 {q(a, .5)} p90 {q(a, .9)} max {a[-1]} ms")
    print("verdicts: " + ", ".join(f"{n} {v}" for v, n in sorted({v: sum(1 for x in r['results'] if x['verdict'] == v) for v in {x['verdict'] for x in r['results']}}.items())))
PY
  done
fi
echo
echo "== fault apply: blackhole applied and healed $APPLICATIONS times on one testbed =="
"$target/$dir/examples/fault_latency" "$APPLICATIONS"
