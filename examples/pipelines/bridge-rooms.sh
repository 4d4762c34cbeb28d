#!/usr/bin/env bash
# Bridges two threads (rooms): the video of the first member to connect in
# THREAD_A is decoded and published again into THREAD_B, where this
# pipeline is a member of its own, so people in THREAD_B see it without
# joining THREAD_A. The threads may be on two servers (SERVER_B).
#
#   examples/pipelines/bridge-rooms.sh                # lobby -> lobby-overflow
#   THREAD_A=stage THREAD_B=overflow examples/pipelines/bridge-rooms.sh -m
#
# Ctrl-C leaves both threads (no -e: if that member has left, its stream
# never ends, and gst-launch-1.0 would wait for it). Environment: SERVER,
# THREAD_A (default THREAD, else lobby), THREAD_B (default lobby-overflow),
# SERVER_B (default SERVER). Arguments go to gst-launch-1.0 (-m prints the
# bus messages).
SERVER="${SERVER:-ws://127.0.0.1:5000/peerjs}"
THREAD_A="${THREAD_A:-${THREAD:-lobby}}"
THREAD_B="${THREAD_B:-lobby-overflow}"
SERVER_B="${SERVER_B:-$SERVER}"
exec gst-launch-1.0 "$@" \
  peerjssrc server="$SERVER" thread="$THREAD_A" name=a \
  peerjssink server="$SERVER_B" thread="$THREAD_B" name=b \
  a. ! video/x-raw ! queue ! videoconvert ! b.video
