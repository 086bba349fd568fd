#!/usr/bin/env bash
# Measures what factorio-isr needs for N servers: N fake Factorio servers (`factorio-isr sim`,
# real RCON and a console log each, a player action every ACTIVITY_MS), one `run` watching
# them with the stock parser and monitors, for SECONDS; then its resident memory (peak and
# at the end), CPU (cores used on average) and how long it took to be ready, from /proc and
# /ready. It runs twice: a cold start (an empty plugin cache: the stock plugins are
# compiled, as in every new pod or container) and a warm one (the cache the first filled).
#
#   host/benches/sizing.sh BINARY N [SECONDS] [ACTIVITY_MS]
#
# docs/deployment.md ("Sizing") quotes its figures for 1, 5, 20, 50 and 100 servers.
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
ticks=$(getconf CLK_TCK)

# One run of the host on the servers: START (cold or warm) names the plugin cache's state.
measure() {
    local start=$1
    rm -rf "$work/state"
    local t0
    t0=$(date +%s%N)
    HEALTH_CHECK_HOST=127.0.0.1 HEALTH_CHECK_PORT=$http_port LOG_LEVEL=warn \
        FACTORIO_ISR_CACHE_DIR="$work/cache" \
        "$binary" run --config "$work/servers.yml" --state-dir "$work/state" \
        > "$work/run-$start.log" 2>&1 &
    local host=$!
    pids+=($host)
    until curl -sf -o /dev/null "http://127.0.0.1:$http_port/ready"; do
        kill -0 "$host" 2>/dev/null || { cat "$work/run-$start.log" >&2; exit 1; }
        sleep 0.01
    done
    local ready_ms=$((($(date +%s%N) - t0) / 1000000))
    cpu() { awk '{print $14 + $15}' "/proc/$host/stat"; }
    # Warm-up: RCON connected, the first readings taken.
    sleep 10
    local c0 c1 w0 w1
    c0=$(cpu)
    w0=$(date +%s.%N)
    sleep "$seconds"
    c1=$(cpu)
    w1=$(date +%s.%N)
    local rss peak lines
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$host/status")
    peak=$(awk '/VmHWM/ {print $2}' "/proc/$host/status")
    lines=$(curl -s "http://127.0.0.1:$http_port/metrics" 2>/dev/null \
        | awk '/^factorio_isr_lines_read_total/ {s += $2} END {print s + 0}')
    kill "$host"
    wait "$host" 2>/dev/null || true
    awk -v start="$start" -v n="$servers" -v rss="$rss" -v peak="$peak" -v c0="$c0" \
        -v c1="$c1" -v t0="$w0" -v t1="$w1" -v hz="$ticks" -v lines="$lines" \
        -v ready="$ready_ms" 'BEGIN {
        printf "start=%s servers=%d ready_ms=%d rss_mib=%.1f peak_rss_mib=%.1f cpu_cores=%.4f lines_read=%d\n",
            start, n, ready, rss / 1024, peak / 1024, (c1 - c0) / hz / (t1 - t0), lines
    }'
}

measure cold
measure warm
