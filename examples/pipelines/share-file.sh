#!/usr/bin/env bash
# Offers a file to everyone in a thread (room): people in the demo room see
# it in the chat and download it; pipelines fetch it with request-file or
# accept-files=all (receive-files.sh). The file is offered once it is read
# whole, and members can fetch it for as long as this runs.
#
#   FILE=report.pdf examples/pipelines/share-file.sh
#   FILE=notes.txt THREAD=standup SERVER=ws://host:5000/peerjs examples/pipelines/share-file.sh -m
#
# Ctrl-C stops offering it. Environment: SERVER, THREAD, FILE. Arguments go
# to gst-launch-1.0 (-m prints the bus messages: peerjs-file-offered with
# the offer's id, then peerjs-file-progress and peerjs-file-complete for
# each member that fetches it).
SERVER="${SERVER:-ws://127.0.0.1:5000/peerjs}"
THREAD="${THREAD:-lobby}"
if [ -z "$FILE" ] || [ ! -r "$FILE" ]; then
  echo "share-file.sh: set FILE to a readable file (FILE=report.pdf $0)" >&2
  exit 2
fi
exec gst-launch-1.0 "$@" \
  filesrc location="$FILE" ! peerjssink server="$SERVER" thread="$THREAD"
