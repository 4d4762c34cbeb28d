#!/usr/bin/env bash
# Bridges an IP camera into a thread (room): its H.264 over RTSP is sent to
# the members as the camera encoded it, with no decoding or encoding here
# (rtph264depay ! h264parse ! peerjssink), so a weak machine bridges many
# cameras. Members joining late ask for a key frame, which goes upstream to
# rtspsrc; the element repeats the stream's parameter sets ahead of every
# key frame.
#
#   CAMERA=rtsp://user:pass@192.168.1.64:554/stream1 examples/pipelines/bridge-rtsp-camera.sh
#   build/tests/rtsp-camera 8554 &     # a stand-in camera, then:
#   CAMERA=rtsp://127.0.0.1:8554/camera NAME="test camera" examples/pipelines/bridge-rtsp-camera.sh -m
#
# Ctrl-C ends the stream (-e) and leaves the thread. Environment: SERVER,
# THREAD, CAMERA (the RTSP URL; H.264 video), NAME (the display-name the
# demo room shows), PROTOCOLS (rtspsrc's, default tcp: RTP interleaved in
# the RTSP connection, through any firewall), LATENCY (rtspsrc's jitter
# buffer, ms, default 100), AUTH_TOKEN. Arguments go to gst-launch-1.0 (-m
# prints the bus messages).
SERVER="${SERVER:-ws://127.0.0.1:5000/peerjs}"
THREAD="${THREAD:-lobby}"
CAMERA="${CAMERA:-rtsp://127.0.0.1:8554/camera}"
NAME="${NAME:-camera}"
PROTOCOLS="${PROTOCOLS:-tcp}"
LATENCY="${LATENCY:-100}"
exec gst-launch-1.0 -e "$@" \
  peerjssink server="$SERVER" thread="$THREAD" ${AUTH_TOKEN:+auth-token="$AUTH_TOKEN"} \
    display-name="$NAME" name=s \
  rtspsrc location="$CAMERA" protocols="$PROTOCOLS" latency="$LATENCY" \
    ! rtph264depay ! h264parse ! queue ! s.video
