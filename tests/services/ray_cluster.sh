#!/usr/bin/env bash
# A two-node Ray cluster on this machine's loopback, for the tests and for trying sweep=ray
# against an existing cluster by hand: a head (`ray start --head`) and a second node joining it
# (`ray start --address`), one CPU each, no dashboard, token authentication off
# (RAY_AUTH_MODE=disabled, which every process that connects must set too).
#
#   tests/services/ray_cluster.sh start DIR   # waits until both nodes are alive; prints the exports
#   tests/services/ray_cluster.sh stop DIR    # ends exactly the processes of this cluster, checks none is left
#
# DIR keeps the record: address, node_ids (one per line, head first), temp_dir (Ray's session
# folder, short-named under /tmp: Ray's socket paths must stay short). `ray stop` is not used: it
# ends every Ray process on the machine, other people's too.
# Loopback addresses: Ray replaces 127.0.0.1 (and localhost) given as a node's address with the
# machine's routable one (ray._private.services.resolve_ip_for_localhost), so the head registers
# as 127.0.0.2 and the second node as 127.0.0.3, both loopback on Linux. Ray's servers still
# listen on every interface (Ray chooses that); nothing outside the machine connects here.
# Needs the ray extra (pip install -e ".[ray]"): the `ray` command of that environment on PATH.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
HEAD_IP=127.0.0.2
NODE_IP=127.0.0.3
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
alive() { [ -r "/proc/$1/cmdline" ] && [ -n "$(tr -d '\0' < "/proc/$1/cmdline" 2> /dev/null)" ]; }

# the cluster's processes: every process whose command line names its temp folder or its head's
# address, and their descendants
cluster_pids() {
  local tmp=$1 address=$2 found next p
  found=$(for p in /proc/[0-9]*; do
            [ "${p#/proc/}" = "$$" ] && continue
            { tr '\0' ' ' < "$p/cmdline"; } 2> /dev/null | grep -q -e "$tmp/" -e "=$address " && echo "${p#/proc/}"
          done || true)
  while :; do
    next=$found
    for p in /proc/[0-9]*; do
      ppid=$( { awk '{print $4}' "$p/stat"; } 2> /dev/null || true)
      if [ -n "$ppid" ] && grep -qx "$ppid" <<< "$found" && ! grep -qx "${p#/proc/}" <<< "$next"; then
        next=$(printf '%s\n%s' "$next" "${p#/proc/}")
      fi
    done
    [ "$next" = "$found" ] && break
    found=$next
  done
  for p in $found; do alive "$p" && echo "$p"; done
  return 0
}

stop() {
  [ -s "$dir/temp_dir" ] || return 0
  local tmp address pids left
  tmp=$(cat "$dir/temp_dir")
  address=$(cat "$dir/address" 2> /dev/null || echo "$HEAD_IP:none")
  pids=$(cluster_pids "$tmp" "$address")
  [ -n "$pids" ] && kill -TERM $pids 2> /dev/null || true
  for _ in $(seq 50); do
    left=$(for p in $pids; do alive "$p" && echo "$p"; done || true)
    [ -z "$left" ] && break
    sleep 0.2
  done
  [ -n "$left" ] && { kill -KILL $left 2> /dev/null || true; sleep 1; }
  left=$(cluster_pids "$tmp" "$address")
  if [ -n "$left" ]; then
    echo "ray_cluster.sh: still running after stop:" $left >&2
    return 1
  fi
  rm -rf "$tmp" "$dir/temp_dir" "$dir/address" "$dir/node_ids"
}

start() {
  command -v ray > /dev/null || { echo "ray_cluster.sh: ray not found: pip install -e \".[ray]\" and put its environment on PATH" >&2; exit 3; }
  if [ -s "$dir/temp_dir" ]; then echo "ray_cluster.sh: $dir already has a cluster; stop it first" >&2; exit 1; fi
  local tmp port python
  tmp=$(mktemp -d /tmp/netlab-ray.XXXXXX)
  echo "$tmp" > "$dir/temp_dir"
  port=$(free_port)
  echo "$HEAD_IP:$port" > "$dir/address"
  common=(--num-cpus=1 --object-store-memory=78643200 --disable-usage-stats)
  if ! ray start --head --node-ip-address="$HEAD_IP" --port="$port" --include-dashboard=false --temp-dir="$tmp" \
       --dashboard-port="$(free_port)" \
       --ray-client-server-port="$(free_port)" --dashboard-agent-listen-port="$(free_port)" \
       --dashboard-agent-grpc-port="$(free_port)" --metrics-export-port="$(free_port)" \
       --runtime-env-agent-port="$(free_port)" "${common[@]}" > "$dir/head.log" 2>&1; then
    cat "$dir/head.log" >&2; stop || true; exit 1
  fi
  if ! timeout 120 ray start --address="$HEAD_IP:$port" --node-ip-address="$NODE_IP" \
       --dashboard-agent-listen-port="$(free_port)" --dashboard-agent-grpc-port="$(free_port)" \
       --metrics-export-port="$(free_port)" --runtime-env-agent-port="$(free_port)" "${common[@]}" > "$dir/node.log" 2>&1; then
    cat "$dir/node.log" >&2; stop || true; exit 1
  fi
  python=$(dirname "$(command -v ray)")/python
  # ready: both nodes alive, as a driver connecting to the head sees them
  if ! timeout 120 "$python" - "$HEAD_IP:$port" "$dir/node_ids" <<'PY'
import sys, time
import ray

ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
for _ in range(120):
    nodes = [n for n in ray.nodes() if n["Alive"]]
    if len(nodes) == 2:
        break
    time.sleep(0.5)
else:
    sys.exit("ray_cluster.sh: the second node did not join")
nodes.sort(key=lambda n: n["NodeManagerAddress"])
with open(sys.argv[2], "w") as f:
    f.writelines(f"{n['NodeID']} {n['NodeManagerAddress']}\n" for n in nodes)
PY
  then
    stop || true; exit 1
  fi
  echo "export RAY_ADDRESS=$HEAD_IP:$port RAY_AUTH_MODE=disabled"
}

case "$action" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
