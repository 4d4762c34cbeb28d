#!/usr/bin/env bash
# Keeps every file offered in a thread (room) in a directory: each is
# requested as it is offered, saved under a temporary name while it comes,
# and renamed to its own name once its SHA-256 checks out.
#
#   examples/pipelines/receive-files.sh
#   DIR=~/inbox THREAD=standup SERVER=ws://host:5000/peerjs examples/pipelines/receive-files.sh -m
#
# Ctrl-C leaves the thread (a file still coming is deleted). Environment:
# SERVER, THREAD, DIR (default ./inbox, made if missing). Arguments go to
# gst-launch-1.0 (-m prints peerjs-file-offer, peerjs-file-progress about
# once a second, and peerjs-file-complete with the path and SHA-256).
SERVER="${SERVER:-ws://127.0.0.1:5000/peerjs}"
THREAD="${THREAD:-lobby}"
DIR="${DIR:-inbox}"
mkdir -p "$DIR" || exit 1
# Each file also comes out of a file_<member>_<id> pad; nothing here wants
# the bytes twice, so the pads go to a fakesink (or are left unlinked).
exec gst-launch-1.0 "$@" \
  peerjssrc server="$SERVER" thread="$THREAD" accept-files=all \
    download-dir="$DIR" ! fakesink sync=false async=false
