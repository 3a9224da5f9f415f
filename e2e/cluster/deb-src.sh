# Sourced: ensure_deb_src adds a deb-src entry for bookworm pointing at the same Debian mirror
# this machine already uses for its binary packages (read from its own apt configuration, never
# written here by name), then runs apt-get update. Does nothing when the entry exists. Used by
# node/compat/redis-compat.sh (Redis' test suite).
DEB_SRC_LIST=/etc/apt/sources.list.d/ringshift-deb-src.sources

debian_uri() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    awk 'BEGIN{RS=""; FS="\n"}
      { types=""; uri=""; suites="";
        for (i=1;i<=NF;i++) {
          if ($i ~ /^Types:/) types=$i; if ($i ~ /^URIs:/) uri=$i; if ($i ~ /^Suites:/) suites=$i }
        if (types ~ /(^|[ :])deb( |$)/ && suites ~ /[ :]bookworm( |$)/) {
          sub(/^URIs:[ ]*/, "", uri); split(uri, u, " "); print u[1]; exit } }' "$f"
  done | head -n1
  if [[ -f /etc/apt/sources.list ]]; then
    awk '$1=="deb" && $0 ~ / bookworm / { for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list
  fi
}

ensure_deb_src() {
  local sudo="" uri
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  [[ -f $DEB_SRC_LIST ]] && return 0
  uri=$(debian_uri | head -n1)
  [[ -n $uri ]] || { echo "no Debian bookworm 'deb' entry found in /etc/apt to derive a deb-src entry from" >&2; return 1; }
  echo "adding a deb-src entry for bookworm from the machine's own Debian entry" >&2
  printf 'Types: deb-src\nURIs: %s\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" |
    $sudo tee "$DEB_SRC_LIST" >/dev/null
  $sudo apt-get update -qq
}
