# Sourced (not run) by deploy/setup.sh and deploy/docker/base-image.sh.
# starling_debian_mirror prints the URI of the Debian mirror that this
# machine's apt sources use for the bookworm suite (deb822 .sources first,
# then one-line .list files), so that no host name is ever written into the
# repository. Returns 1 when no bookworm source exists.
starling_debian_mirror() {
    local f uri=""
    # deb822 sources: the stanza whose Suites include "bookworm".
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri=$(awk 'BEGIN{RS=""; FS="\n"}
            /Suites:[^\n]*bookworm([ \n]|$)/ {
                for (i = 1; i <= NF; i++) if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", $i); split($i, u, " "); print u[1]; exit }
            }' "$f")
        [ -n "$uri" ] && break
    done
    # one-line sources
    if [ -z "$uri" ]; then
        uri=$(grep -hsE '^deb[[:space:]]+[^[:space:]]+[[:space:]]+bookworm[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
              awk '{print $2; exit}')
    fi
    [ -n "$uri" ] || return 1
    printf '%s\n' "$uri"
}
