#!/usr/bin/env bash
# natlab.sh builds Macula's NAT lab out of network namespaces, for people and
# for the Go helpers in this directory (which run this very script, embedded
# in the test binary). Needs root, iproute2, nftables and, for the STUN
# server, coturn (`apt-get install -y iproute2 nftables coturn`).
#
#   natlab.sh up     [-p PREFIX] [-s "SITE ..."] [--no-stun] [--owner PID]
#   natlab.sh down   -p PREFIX | --all
#   natlab.sh status [-p PREFIX]
#   natlab.sh topo   -p PREFIX
#   natlab.sh exec   -p PREFIX NAME CMD...   (NAME: stun, relay, relay2, public,
#                                             SITE (its first host), SITE/K, SITE/router)
#   natlab.sh sweep  (tear down labs whose --owner process has exited)
#   natlab.sh renat  -p PREFIX SITE NAT      (give a site's router another NAT type,
#                                             at run time; existing flows keep their mapping)
#
# Topology (every address lives only inside the lab's namespaces; the "public"
# bridge has no link to the host's network and no namespace has a default
# route to anything outside the lab, so no packet can leave the machine):
#
#   PREFIX-pub        bridge br0: the "internet", 7.0.0.0/24 and 8.0.0.0/24 on one segment
#   PREFIX-stun       7.0.0.2 and 7.0.0.3: coturn on both, ports 3478 and 3479 (RFC 5780)
#   PREFIX-relay      7.0.0.10  (bootstrap / circuit relay)
#   PREFIX-relay2     7.0.0.11  (second relay)
#   PREFIX-public     7.0.0.20  (a host with no NAT)
#   site number N (1, 2, ... in the order given):
#   PREFIX-SITE-r     router: wan 8.0.0.N/24, lan bridge 10.0.N.1/24, nftables rules of its NAT type
#   PREFIX-SITE-hK    host K: 10.0.N.(K+1)/24, default route via 10.0.N.1
#
# A SITE is NAME[:NAT[:HOSTS[:HAIRPIN]]]; NAT is one of full_cone, restricted,
# port_restricted, symmetric (default: NAME), HOSTS the number of hosts
# (default 1), HAIRPIN 1 to make the router hairpin (NAT loopback). The site
# named "hairpin" defaults to hairpin:port_restricted:2:1. Default sites:
#   full_cone restricted port_restricted symmetric hairpin
#
# NAT rules (nftables, table ip natlab in the router; all checked with an
# RFC 5780 client, see natlab_test.go):
#   every type      input: iifname wan ct state new drop (the router drops
#                   unsolicited packets to itself); forward: new flows from the
#                   wan pass only when DNATed
#   port_restricted oifname wan masquerade
#                   (endpoint-independent mapping, address-and-port-dependent filtering)
#   symmetric       oifname wan masquerade random,fully-random
#                   (a new port per destination: address-and-port-dependent mapping)
#   full_cone       masquerade, plus prerouting iifname wan udp dport 1024-65535
#                   dnat to the host (endpoint-independent filtering)
#   restricted      masquerade, plus a dynamic set {mapped port . peer address}
#                   filled in postrouting after the masquerade, and prerouting
#                   udp dport . ip saddr @peers dnat to the host
#                   (address-dependent filtering)
#   hairpin         additionally: a dynamic map mapped port -> host address .
#                   port filled in postrouting; packets from the lan to the
#                   router's public address are DNATed through it and SNATed to
#                   the public address (RFC 4787 REQ-9)
#
# The topo command prints one line per element, for the Go helpers:
#   lab PREFIX
#   stun NS IP1 IP2 PORT ALTPORT
#   host NAME NS ADDR
#   site NAME NAT HAIRPIN ROUTER_NS WAN_ADDR LAN_CIDR
#   sitehost SITE K NS ADDR
set -euo pipefail

STATE_ROOT=${NATLAB_STATE:-/run/natlab}
DEFAULT_SITES="full_cone restricted port_restricted symmetric hairpin"
STUN_IP1=7.0.0.2 STUN_IP2=7.0.0.3 STUN_PORT=3478 STUN_ALT=3479

die() { echo "natlab: $*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root"; }

# ---- building blocks --------------------------------------------------------

# mkns NS: a namespace with loopback up and IPv6 off (keeps the lab to the
# IPv4 addresses above).
mkns() {
  ip netns add "$1"
  echo "$1" >>"$STATE/namespaces"
  ip -n "$1" link set lo up
  ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

# nobrnf NS: if br_netfilter is loaded (it is global: Docker loads it), frames
# crossing a bridge in NS would meet the IPv4 hooks at the bridge, and a
# DNAT to a host on the bridge would be bridged back out of the port it came
# from, which bridges refuse: hairpinning would depend on the machine. Keep
# bridges plain.
nobrnf() {
  if [ -d /proc/sys/net/bridge ]; then
    ip netns exec "$1" sysctl -qw net.bridge.bridge-nf-call-iptables=0 \
      net.bridge.bridge-nf-call-ip6tables=0 net.bridge.bridge-nf-call-arptables=0
  fi
}

# publeg NS IFNAME ADDR...: a veth from NS to the public bridge, with the
# addresses (each /24) on it and an on-link route to the other public /24.
PUBN=0
publeg() {
  local ns=$1 ifname=$2 a
  shift 2
  PUBN=$((PUBN + 1))
  ip -n "$ns" link add "$ifname" type veth peer name "p$PUBN" netns "$PUB"
  ip -n "$PUB" link set "p$PUBN" master br0 up
  for a in "$@"; do ip -n "$ns" addr add "$a/24" dev "$ifname"; done
  ip -n "$ns" link set "$ifname" up
  case "$1" in
    7.*) ip -n "$ns" route add 8.0.0.0/24 dev "$ifname" ;;
    8.*) ip -n "$ns" route add 7.0.0.0/24 dev "$ifname" ;;
  esac
}

# router_rules NAT HAIRPIN PUBIP LANHOST LANCIDR: the nftables ruleset of a router.
router_rules() {
  local nat=$1 hairpin=$2 pub=$3 host=$4 lan=$5 masq="masquerade"
  if [ "$nat" = symmetric ]; then masq="masquerade random,fully-random"; fi
  echo "table ip natlab {"
  if [ "$nat" = restricted ]; then
    # Keyed by the mapped port (filled after the masquerade, priority 200),
    # or the filter would be endpoint-independent.
    echo "  set peers { type inet_service . ipv4_addr; flags dynamic,timeout; timeout 5m; }"
  fi
  if [ "$hairpin" = 1 ]; then
    echo "  map hairpin { type inet_service : ipv4_addr . inet_service; flags dynamic,timeout; timeout 5m; }"
  fi
  cat <<EOF
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "wan" ct state new drop
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname "wan" ct state new ct status dnat accept
    iifname "wan" ct state new drop
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" $masq
EOF
  # (postrouting knows no input interface: match the LAN by source address)
  if [ "$hairpin" = 1 ]; then echo "    ip saddr $lan oifname \"lan\" ct status dnat snat to $pub"; fi
  echo "  }"
  if [ "$nat" = restricted ] || [ "$hairpin" = 1 ]; then
    echo "  chain learn {"
    echo "    type filter hook postrouting priority 200; policy accept;"
    if [ "$nat" = restricted ]; then echo "    oifname \"wan\" meta l4proto udp update @peers { udp sport . ip daddr }"; fi
    if [ "$hairpin" = 1 ]; then echo "    oifname \"wan\" meta l4proto udp update @hairpin { udp sport : ct original ip saddr . ct original proto-src }"; fi
    echo "  }"
  fi
  echo "  chain prerouting {"
  echo "    type nat hook prerouting priority dstnat; policy accept;"
  case "$nat" in
    full_cone) echo "    iifname \"wan\" udp dport 1024-65535 dnat to $host" ;;
    restricted) echo "    iifname \"wan\" udp dport . ip saddr @peers dnat to $host" ;;
  esac
  if [ "$hairpin" = 1 ]; then echo "    iifname \"lan\" ip daddr $pub meta l4proto udp dnat to udp dport map @hairpin"; fi
  echo "  }"
  echo "}"
}

# site N NAME NAT HOSTS HAIRPIN
site() {
  local n=$1 name=$2 nat=$3 hosts=$4 hairpin=$5 k r h
  r="$P-$name-r"
  mkns "$r"
  publeg "$r" wan "8.0.0.$n"
  ip -n "$r" link add lan type bridge
  nobrnf "$r"
  ip -n "$r" addr add "10.0.$n.1/24" dev lan
  ip -n "$r" link set lan up
  ip netns exec "$r" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.lan.send_redirects=0
  for k in $(seq "$hosts"); do
    h="$P-$name-h$k"
    mkns "$h"
    ip -n "$h" link add eth0 type veth peer name "h$k" netns "$r"
    ip -n "$r" link set "h$k" master lan up
    ip -n "$h" addr add "10.0.$n.$((k + 1))/24" dev eth0
    ip -n "$h" link set eth0 up
    ip -n "$h" route add default via "10.0.$n.1"
    echo "sitehost $name $k $h 10.0.$n.$((k + 1))" >>"$STATE/topo"
  done
  router_rules "$nat" "$hairpin" "8.0.0.$n" "10.0.$n.2" "10.0.$n.0/24" | ip netns exec "$r" nft -f -
  echo "site $name $nat $hairpin $r 8.0.0.$n 10.0.$n.0/24" >>"$STATE/topo"
}

publichost() { # NAME ADDR
  mkns "$P-$1"
  publeg "$P-$1" eth0 "$2"
  echo "host $1 $P-$1 $2" >>"$STATE/topo"
}

start_coturn() {
  command -v turnserver >/dev/null || die "turnserver not found (apt-get install coturn), or use --no-stun"
  # coturn 4.6.1 answers RFC 5780 (OTHER-ADDRESS, CHANGE-REQUEST) only with
  # two listening IPs of one family and an alternative port.
  setsid ip netns exec "$P-stun" turnserver -n \
    --listening-ip="$STUN_IP1" --listening-ip="$STUN_IP2" \
    --listening-port="$STUN_PORT" --alt-listening-port="$STUN_ALT" \
    --no-tls --no-dtls --stun-only --no-cli --no-software-attribute \
    --pidfile="$STATE/coturn.pid" --log-file=stdout --simple-log \
    </dev/null >"$STATE/coturn.log" 2>&1 &
  echo $! >"$STATE/coturn.launcher"
  local i
  for i in $(seq 100); do
    if ip netns exec "$P-stun" ss -Hunl | grep -q "$STUN_IP2:$STUN_ALT"; then return 0; fi
    kill -0 "$(cat "$STATE/coturn.launcher")" 2>/dev/null || { cat "$STATE/coturn.log" >&2; die "coturn exited"; }
    sleep 0.05
  done
  cat "$STATE/coturn.log" >&2
  die "coturn did not start listening on $STUN_IP2:$STUN_ALT"
}

# ---- commands ---------------------------------------------------------------

cmd_up() {
  need_root
  local sites=$DEFAULT_SITES stun=1 owner=""
  P=nl
  while [ $# -gt 0 ]; do
    case "$1" in
      -p) P=$2; shift 2 ;;
      -s) sites=$2; shift 2 ;;
      --no-stun) stun=0; shift ;;
      --owner) owner=$2; shift 2 ;;
      *) die "up: unknown argument $1" ;;
    esac
  done
  [[ "$P" =~ ^[a-z0-9]{1,12}$ ]] || die "prefix must be 1-12 of [a-z0-9]: $P"
  command -v nft >/dev/null || die "nft not found (apt-get install nftables)"
  STATE="$STATE_ROOT/$P"
  [ -e "$STATE" ] && die "a lab with prefix $P exists already (natlab.sh down -p $P)"
  mkdir -p "$STATE"
  echo "${owner:-0}" >"$STATE/owner"
  : >"$STATE/namespaces"
  : >"$STATE/topo"
  # Whatever fails from here on, leave nothing behind.
  trap 'rc=$?; if [ $rc -ne 0 ]; then echo "natlab: up failed, tearing down $P" >&2; teardown "$P"; fi' EXIT

  echo "lab $P" >>"$STATE/topo"
  PUB="$P-pub"
  mkns "$PUB"
  ip -n "$PUB" link add br0 type bridge
  nobrnf "$PUB"
  ip -n "$PUB" link set br0 up

  mkns "$P-stun"
  publeg "$P-stun" eth0 "$STUN_IP1" "$STUN_IP2"
  echo "host stun $P-stun $STUN_IP1" >>"$STATE/topo"
  echo "stun $P-stun $STUN_IP1 $STUN_IP2 $STUN_PORT $STUN_ALT" >>"$STATE/topo"
  publichost relay 7.0.0.10
  publichost relay2 7.0.0.11
  publichost public 7.0.0.20

  local n=0 spec name nat hosts hairpin
  for spec in $sites; do
    n=$((n + 1))
    [ $n -le 50 ] || die "at most 50 sites"
    IFS=: read -r name nat hosts hairpin <<<"$spec"
    if [ "$name" = hairpin ]; then
      nat=${nat:-port_restricted} hosts=${hosts:-2} hairpin=${hairpin:-1}
    fi
    nat=${nat:-$name} hosts=${hosts:-1} hairpin=${hairpin:-0}
    [[ "$name" =~ ^[a-z0-9_]{1,20}$ ]] || die "bad site name: $name"
    case "$nat" in full_cone | restricted | port_restricted | symmetric) ;; *) die "site $name: unknown NAT type $nat" ;; esac
    [[ "$hosts" =~ ^[1-9]$ ]] || die "site $name: hosts must be 1-9"
    site "$n" "$name" "$nat" "$hosts" "$hairpin"
  done
  if [ $stun = 1 ]; then start_coturn; fi
  trap - EXIT
  cat "$STATE/topo"
}

# teardown PREFIX: end the processes inside the lab's namespaces (coturn and
# whatever was started there), delete the namespaces, forget the lab.
teardown() {
  local p=$1 st="$STATE_ROOT/$1" ns pids
  [ -d "$st" ] || return 0
  if [ -f "$st/namespaces" ]; then
    for ns in $(cat "$st/namespaces"); do
      pids=$(ip netns pids "$ns" 2>/dev/null || true)
      [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
    done
    for ns in $(cat "$st/namespaces"); do
      ip netns del "$ns" 2>/dev/null || true
    done
  fi
  rm -rf "$st"
}

cmd_down() {
  need_root
  case "${1:-}" in
    -p) [ -n "${2:-}" ] || die "down: -p PREFIX"; teardown "$2" ;;
    --all) local d; for d in "$STATE_ROOT"/*/; do if [ -d "$d" ]; then teardown "$(basename "$d")"; fi; done ;;
    *) die "down: -p PREFIX or --all" ;;
  esac
}

cmd_sweep() {
  local d owner
  for d in "$STATE_ROOT"/*/; do
    [ -d "$d" ] || continue
    owner=$(cat "$d/owner" 2>/dev/null || echo 0)
    if [ "$owner" != 0 ] && ! kill -0 "$owner" 2>/dev/null; then
      echo "natlab: sweeping $(basename "$d") (owner $owner is gone)" >&2
      teardown "$(basename "$d")"
    fi
  done
}

cmd_renat() {
  [ "${1:-}" = -p ] && [ $# -eq 4 ] || die "renat: -p PREFIX SITE NAT"
  need_root
  local p=$2 name=$3 nat=$4 topo="$STATE_ROOT/$2/topo" line
  case "$nat" in
    full_cone | restricted | port_restricted | symmetric) ;;
    *) die "renat: NAT $nat: want full_cone, restricted, port_restricted or symmetric" ;;
  esac
  [ -f "$topo" ] || die "no lab $p"
  line=$(awk -v s="$name" '$1=="site" && $2==s' "$topo")
  [ -n "$line" ] || die "no site $name in lab $p"
  # site NAME NAT HAIRPIN ROUTER_NS WAN_ADDR LAN_CIDR
  set -- $line
  local hairpin=$4 r=$5 pub=$6 lan=$7
  local n=${pub##*.}
  { echo "delete table ip natlab"; router_rules "$nat" "$hairpin" "$pub" "10.0.$n.2" "$lan"; } | ip netns exec "$r" nft -f -
  awk -v s="$name" -v t="$nat" '$1=="site" && $2==s {$3=t} {print}' "$topo" >"$topo.new"
  mv "$topo.new" "$topo"
}

cmd_topo() {
  [ "${1:-}" = -p ] && [ -n "${2:-}" ] || die "topo: -p PREFIX"
  cat "$STATE_ROOT/$2/topo"
}

cmd_status() {
  local d p ns
  for d in "$STATE_ROOT"/*/; do
    [ -d "$d" ] || continue
    p=$(basename "$d")
    if [ "${1:-}" = -p ] && [ "$2" != "$p" ]; then continue; fi
    echo "lab $p (owner pid $(cat "$d/owner"))"
    sed 's/^/  /' "$d/topo" | grep -v '^  lab '
    if [ -f "$d/coturn.pid" ] && kill -0 "$(cat "$d/coturn.pid")" 2>/dev/null; then
      echo "  coturn running (pid $(cat "$d/coturn.pid"))"
    else
      echo "  coturn not running"
    fi
    for ns in $(cat "$d/namespaces"); do
      ip netns list | grep -qw "^$ns" || echo "  MISSING namespace $ns"
    done
  done
}

# ns_of PREFIX NAME: the namespace of a lab element.
ns_of() {
  local p=$1 name=$2 topo="$STATE_ROOT/$1/topo"
  [ -f "$topo" ] || die "no lab $p"
  case "$name" in
    */router) awk -v s="${name%/router}" '$1=="site" && $2==s {print $5}' "$topo" ;;
    */*) awk -v s="${name%/*}" -v k="${name#*/}" '$1=="sitehost" && $2==s && $3==k {print $4}' "$topo" ;;
    *) awk -v s="$name" '($1=="host" && $2==s) {print $3} ($1=="sitehost" && $2==s && $3==1) {print $4}' "$topo" ;;
  esac
}

cmd_exec() {
  [ "${1:-}" = -p ] && [ $# -ge 4 ] || die "exec: -p PREFIX NAME CMD..."
  local ns
  ns=$(ns_of "$2" "$3")
  [ -n "$ns" ] || die "no element $3 in lab $2"
  shift 3
  exec ip netns exec "$ns" "$@"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  sweep) shift; cmd_sweep ;;
  topo) shift; cmd_topo "$@" ;;
  status) shift; cmd_status "$@" ;;
  exec) shift; cmd_exec "$@" ;;
  renat) shift; cmd_renat "$@" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
