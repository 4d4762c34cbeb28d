#!/usr/bin/env bash
# Publishes a moving test pattern and a 440 Hz tone into a thread (room), as
# one member next to the people in the demo room.
#
#   examples/pipelines/publish-test-pattern.sh
#   THREAD=standup SERVER=ws://host:5000/peerjs examples/pipelines/publish-test-pattern.sh -m
#
# With tools/run's server, open http://127.0.0.1:5000/#lobby to see and hear
# it. Ctrl-C ends the streams (-e) and leaves the thread. Environment:
# SERVER, THREAD, VIDEO_SOURCE and AUDIO_SOURCE (what is published),
# VIDEO_CAPS (its size and rate), DISPLAY_NAME (the name the demo room
# shows for it), AUTH_TOKEN (for a server that requires tokens; tools/token
# mints one). Arguments go to gst-launch-1.0 (-m prints the bus messages).
SERVER="${SERVER:-ws://127.0.0.1:5000/peerjs}"
THREAD="${THREAD:-lobby}"
VIDEO_SOURCE="${VIDEO_SOURCE:-videotestsrc is-live=true pattern=ball}"
VIDEO_CAPS="${VIDEO_CAPS:-video/x-raw,width=640,height=480,framerate=30/1}"
AUDIO_SOURCE="${AUDIO_SOURCE:-audiotestsrc is-live=true wave=sine freq=440}"
set -f  # the sources are pipeline fragments: split them on spaces, never glob
# shellcheck disable=SC2086
exec gst-launch-1.0 -e "$@" \
  peerjssink server="$SERVER" thread="$THREAD" ${AUTH_TOKEN:+auth-token="$AUTH_TOKEN"} \
  ${DISPLAY_NAME:+display-name="$DISPLAY_NAME"} name=s \
  $VIDEO_SOURCE ! $VIDEO_CAPS ! s.video \
  $AUDIO_SOURCE ! s.audio
