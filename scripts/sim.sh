#!/usr/bin/env bash
# Runs the deterministic simulation (tests/sim, issue 26); the Makefile's sim targets call it.
#   scripts/sim.sh seeds N BIN [BASE]   seeds BASE..BASE+N-1 in two processes (both cores); prints
#                                       each failure, the figures, and last
#                                       `seeds=N failures=F seeds_per_min=R`; exit 1 if F > 0
#   scripts/sim.sh seed S BIN           replays seed S (prints `seed=S hash=H`)
#   scripts/sim.sh planted N BIN        each planted bug over up to N seeds (BIN built with
#                                       -DKVSTORE_SIM_PLANTED_BUGS=ON); exit 1 if one is missed
set -euo pipefail
mode=${1:?mode}
arg=${2:?argument}
bin=${3:?kvstore_sim binary}
base=${4:-1}
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet 2>/dev/null || commit="$commit-dirty"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

case "$mode" in
  seed)
    exec "$bin" --seed="$arg" --commit="$commit"
    ;;
  seeds)
    n=$arg
    half=$(( (n + 1) / 2 ))
    rest=$(( n - half ))
    start=$(date +%s.%N)
    "$bin" --from="$base" --stride=2 --count="$half" --commit="$commit" >"$tmp/0" &
    p0=$!
    p1=
    if [ "$rest" -gt 0 ]; then
      "$bin" --from=$(( base + 1 )) --stride=2 --count="$rest" --commit="$commit" >"$tmp/1" &
      p1=$!
    fi
    wait "$p0" || true
    [ -z "$p1" ] || wait "$p1" || true
    end=$(date +%s.%N)
    cat "$tmp"/* | grep -v '^summary' || true
    cat "$tmp"/* | grep '^summary' | awk -v n="$n" -v start="$start" -v end="$end" '
      {
        for (i = 2; i <= NF; i++) {
          split($i, kv, "=")
          if (kv[1] == "convergence_max_s") { if (kv[2] > conv) conv = kv[2] }
          else sum[kv[1]] += kv[2]
        }
      }
      END {
        wall = end - start
        if (wall <= 0) wall = 0.001
        printf "simulated_seconds_per_wall_second=%.0f simulated_s=%.0f wall_s=%.1f tasks_per_seed=%.0f\n", sum["simulated_s"] / wall, sum["simulated_s"], wall, sum["tasks"] / n
        printf "heals=%d convergence_mean_s=%.1f convergence_max_s=%.1f\n", sum["heals"], (sum["heals"] > 0 ? sum["convergence_total_s"] / sum["heals"] : 0), conv
        printf "faults_per_seed:"
        for (k in sum) if (k ~ /^fault_/) printf " %s=%.2f", substr(k, 7), sum[k] / n
        printf "\n"
        printf "seeds=%d failures=%d seeds_per_min=%.0f\n", sum["seeds"], sum["failures"], sum["seeds"] / wall * 60
        exit (sum["failures"] > 0 || sum["seeds"] != n) ? 1 : 0
      }'
    ;;
  planted)
    n=$arg
    bugs="skip_relist_diff canary_before_drain drop_last_event reuse_expired_lease resume_wrong_revision resume_behind no_stale_delete lost_lease_not_requeued"
    echo "commit=$commit planted bugs, up to $n seeds each"
    # Two at a time, one per core.
    printf '%s\n' $bugs | xargs -P 2 -I{} sh -c "'$bin' --planted={} --count=$n > '$tmp/{}' 2>&1 || true"
    missed=0
    for bug in $bugs; do
      cat "$tmp/$bug"
      grep -q "^caught $bug" "$tmp/$bug" || missed=$(( missed + 1 ))
    done
    echo "planted=$(echo $bugs | wc -w) missed=$missed"
    [ "$missed" -eq 0 ]
    ;;
  *)
    echo "unknown mode $mode" >&2
    exit 2
    ;;
esac
