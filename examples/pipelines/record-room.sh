#!/usr/bin/env bash
# Records a whole thread (room) to a Matroska file: every member's picture
# in one grid (VP8) and every member's sound mixed (Opus), as members come
# and go (peerjssrc mix=true). Black and silence while the room is empty.
#
#   examples/pipelines/record-room.sh                 # writes room.mkv
#   THREAD=standup OUTPUT=standup.mkv WIDTH=640 HEIGHT=360 examples/pipelines/record-room.sh
#
# Stop it with Ctrl-C: -e turns that into end-of-stream, so the file is
# finalized (duration and index written) before it exits. Environment:
# SERVER, THREAD, OUTPUT (default room.mkv), WIDTH and HEIGHT of the
# picture (default 1280x720). Arguments go to gst-launch-1.0 (-m prints the
# bus messages: who comes and goes).
SERVER="${SERVER:-ws://127.0.0.1:5000/peerjs}"
THREAD="${THREAD:-lobby}"
OUTPUT="${OUTPUT:-room.mkv}"
WIDTH="${WIDTH:-1280}"
HEIGHT="${HEIGHT:-720}"
exec gst-launch-1.0 -e "$@" \
  peerjssrc server="$SERVER" thread="$THREAD" name=r \
    mix=true mix-width="$WIDTH" mix-height="$HEIGHT" \
  matroskamux name=mux ! filesink location="$OUTPUT" \
  r.video ! queue ! videoconvert ! vp8enc deadline=1 ! queue ! mux. \
  r.audio ! queue ! audioconvert ! audioresample ! opusenc ! queue ! mux.
