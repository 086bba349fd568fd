#!/usr/bin/env bash
# Measures what factorio-isr needs for N servers: N fake Factorio servers (`factorio-isr sim`,
# real RCON and a console log each, a player action every ACTIVITY_MS), one `run` watching
# them with the stock parser and monitors, for SECONDS; then its resident memory (peak and
# at the end) and CPU (cores used on average), from /proc.
#
#   host/benches/sizing.sh BINARY N [SECONDS] [ACTIVITY_MS]
#
# docs/deployment.md ("Sizing") quotes its figures for 1, 5, 20 and 50 servers.
set -euo pipefail

binary=$(realpath "$1")
servers=$2
seconds=${3:-120}
activity=${4:-1000}
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

base=$((30000 + RANDOM % 5000))
{
    echo "servers:"
    for i in $(seq 1 "$servers"); do
        port=$((base + i))
        log=$work/s$i.log
        : > "$log"
        "$binary" sim --rcon-port "$port" --password sizing --log "$log" \
            --activity-ms "$activity" --seed "$i" > /dev/null 2>&1 &
        pids+=($!)
        cat <<EOF
  s$i:
    name: "Server $i"
    log_path: $log
    rcon_host: 127.0.0.1
    rcon_port: $port
    rcon_password: sizing
    enable_alerts: true
    sinks:
      - jsonl: $work/s$i.jsonl
EOF
    done
} > "$work/servers.yml"
sleep 1

http_port=$((base - 1))
HEALTH_CHECK_HOST=127.0.0.1 HEALTH_CHECK_PORT=$http_port LOG_LEVEL=warn \
    FACTORIO_ISR_CACHE_DIR="$work/cache" \
    "$binary" run --config "$work/servers.yml" --state-dir "$work/state" \
    > "$work/run.log" 2>&1 &
host=$!
pids+=($host)

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$host/stat"; }
# Warm-up: plugins compiled (or loaded from the cache), RCON connected.
sleep 10
start_cpu=$(cpu)
start=$(date +%s.%N)
sleep "$seconds"
end_cpu=$(cpu)
end=$(date +%s.%N)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$host/status")
peak=$(awk '/VmHWM/ {print $2}' "/proc/$host/status")
lines=$(curl -s "http://127.0.0.1:$http_port/metrics" 2>/dev/null \
    | awk '/^factorio_isr_lines_read_total/ {s += $2} END {print s + 0}')
awk -v n="$servers" -v rss="$rss" -v peak="$peak" -v c0="$start_cpu" -v c1="$end_cpu" \
    -v t0="$start" -v t1="$end" -v hz="$ticks" -v lines="$lines" 'BEGIN {
        printf "servers=%d rss_mib=%.1f peak_rss_mib=%.1f cpu_cores=%.4f lines_read=%d\n",
            n, rss / 1024, peak / 1024, (c1 - c0) / hz / (t1 - t0), lines
    }'
