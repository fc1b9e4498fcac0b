#!/bin/sh
# dirstore.sh: a store program for cmdstore that keeps one file per entry in a directory.
#
#   dirstore.sh put NAME   entry on stdin, written to $CMDSTORE_DIR/NAME (0600, atomically)
#   dirstore.sh get NAME   prints the entry; exit 3 when there is none
#   dirstore.sh del NAME   removes the entry; exit 0 also when there was none
#
# CMDSTORE_DIR defaults to ./cmdstore-entries. A stand-in for a real vault's command-line
# client: the secret arrives on stdin and is never on a command line.
set -eu
umask 077
dir=${CMDSTORE_DIR:-cmdstore-entries}
[ $# -eq 2 ] || { echo "usage: dirstore.sh put|get|del NAME" >&2; exit 2; }
op=$1
name=$2
case /$name/ in
//* | */../* | */./*) echo "dirstore: refusing entry name '$name'" >&2; exit 2 ;;
esac
file=$dir/$name
case $op in
put)
    mkdir -p "$(dirname "$file")"
    cat >"$file.tmp.$$"
    mv -f "$file.tmp.$$" "$file"
    ;;
get)
    [ -f "$file" ] || exit 3
    cat "$file"
    ;;
del)
    rm -f "$file"
    ;;
*)
    echo "dirstore: unknown operation '$op'; use put, get or del" >&2
    exit 2
    ;;
esac
