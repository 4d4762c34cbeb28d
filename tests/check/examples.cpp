/* The scripts in examples/pipelines/, run as a user would run them, with
 * test sources and fake sinks swapped in through their environment
 * variables. One test case per scenario: each is a bash script (below) run
 * in a loopback-only network namespace (and a PID namespace of its own, so
 * that nothing it started outlives it) together with a peerjs-signalling
 * on a free port. The scripts start the examples with `-m -v`, wait for
 * what a user would look for in their output (bus messages, buffers at the
 * sinks, caps, pixel colours), stop them with SIGINT as Ctrl-C does, and
 * print "FAIL <why>" and exit 1 at the first thing that is wrong. The
 * recording is then opened with GstDiscoverer here.
 *
 * Every scenario leaves its logs (and the recording) in
 * $PEERJS_ARTIFACTS/examples-<scenario>/; its output is printed when it
 * fails. The suite is skipped (exit 77) only when unshare or ip is
 * missing. */
#include "sandbox.h"

#include <gst/check/gstcheck.h>
#include <gst/pbutils/pbutils.h>

#include <glib/gstdio.h>

#include <csignal>
#include <fcntl.h>
#include <cstdio>
#include <string>
#include <vector>
#include <sys/wait.h>
#include <unistd.h>

using namespace peerjs::test;

namespace {

/* Longest a scenario may run; each takes 3-6 s on two cores. */
constexpr int SCENARIO_TIMEOUT_S = 75;

std::string examples_dir;   /* examples/pipelines in the source tree */

/* Helpers for the scenarios. Every example runs in the background with its
 * output in NAME.log and its pid in NAME.pid, in the scenario's directory. */
const char *PRELUDE = R"sh(
set -u
cd "$WORK" || exit 1
CAPS=video/x-raw,width=320,height=240,framerate=15/1
# Fake sinks that render at once and handle their state alone, as
# watch-room.sh's default sinks do.
FAKE="sync=false async=false"

fail () {
  echo "FAIL $*"
  exit 1
}

note () {
  echo "# $*"
}

# When the scenario fails: what each program said, without the flood of
# buffer and caps lines that -v prints.
report () {
  status=$?
  [ "$status" = 0 ] && return
  for log in *.log; do
    [ -f "$log" ] || continue
    echo "----- $log ($(wc -l < "$log") lines): messages and errors"
    grep -E 'peerjs-|ERROR|WARN|CRITICAL|\((error|warning)\)|Interrupt|EOS|Execution|Setting' "$log" \
      | grep -v 'last-message' | cut -c1-400 | head -n 60
    echo "----- $log: last lines"
    grep -v 'last-message\|^0000' "$log" | tail -n 12 | cut -c1-400
  done
}
trap report EXIT

# running NAME: whether NAME is still running
running () {
  kill -0 "$(cat "$1.pid")" 2>/dev/null
}

# wait_for NAME TEXT SECONDS: until a line of NAME's output contains TEXT
wait_for () {
  i=0
  until grep -qF -- "$2" "$1.log"; do
    running "$1" || grep -qF -- "$2" "$1.log" || {
      near "$1" "$2"
      fail "$1 exited before printing \"$2\""
    }
    i=$((i + 1))
    [ "$i" -le $(($3 * 10)) ] || {
      near "$1" "$2"
      fail "$1 did not print \"$2\" within $3 s"
    }
    sleep 0.1
  done
}

# near NAME "WHAT = VALUE": what NAME printed for WHAT instead
near () {
  [ "${2%% = *}" != "$2" ] || return 0
  echo "$1 printed for \"${2%% = *}\":"
  grep -F -- "${2%% = *} = " "$1.log" | tail -n 3 | cut -c1-300
}

# count NAME TEXT: lines of NAME's output that contain TEXT
count () {
  grep -cF -- "$2" "$1.log"
}

# wait_count NAME TEXT N SECONDS: until N lines of NAME's output contain TEXT
wait_count () {
  i=0
  until [ "$(count "$1" "$2")" -ge "$3" ]; do
    running "$1" || fail "$1 exited with $(count "$1" "$2") of $3 lines \"$2\""
    i=$((i + 1))
    [ "$i" -le $(($4 * 10)) ] \
      || fail "$1 printed $(count "$1" "$2") of $3 lines \"$2\" in $4 s"
    sleep 0.1
  done
}

# server: peerjs-signalling on a free port; sets SERVER for the examples
server () {
  "$PEERJS_SIGNALLING" --host 127.0.0.1 --port 0 > server.log 2>&1 &
  echo $! > server.pid
  wait_for server 'listening on http://127.0.0.1:' 10
  port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' server.log | head -n 1)
  export SERVER="ws://127.0.0.1:$port/peerjs"
  note "server at $SERVER"
}

# launch NAME SCRIPT [VARIABLE=value ...]: runs examples/pipelines/SCRIPT
# with those variables and -m -v (bus messages, caps and sink messages in
# its output). Not under G_DEBUG=fatal-criticals: GStreamer 1.22.0's
# rtpsession race (see tests/check/elements.cpp) would stop a pipeline
# with a trap; `clean` fails every other critical instead.
launch () {
  name=$1 script=$2
  shift 2
  note "$name: $* $script -m -v"
  env -u G_DEBUG "$@" "$EXAMPLES/$script" -m -v > "$name.log" 2>&1 &
  echo $! > "$name.pid"
}

# session_id VARIABLE NAME ELEMENT: sets VARIABLE to the member id in
# ELEMENT's peerjs-socket-connect message
session_id () {
  wait_for "$2" "from element \"$3\" (element): peerjs-socket-connect" 20
  printf -v "$1" '%s' "$(grep -F "from element \"$3\" (element): peerjs-socket-connect" "$2.log" \
    | sed -n 's/.*id=(string)\([0-9a-z]*\).*/\1/p' | head -n 1)"
  [ -n "${!1}" ] || fail "no member id in $2's peerjs-socket-connect"
}

# media NAME MEMBER KIND: wait until NAME receives MEMBER's KIND
media () {
  wait_for "$1" "peerjs-media-connect, member=(string)$2, kind=(string)$3" 20
}

# stop NAME: SIGINT, as Ctrl-C; NAME must end cleanly and soon
stop () {
  pid=$(cat "$1.pid")
  kill -INT "$pid" 2>/dev/null
  i=0
  while kill -0 "$pid" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -le 150 ] || fail "$1 did not exit within 15 s of SIGINT"
    sleep 0.1
  done
  wait "$pid"
  status=$?
  [ "$status" = 0 ] || fail "$1 exited with status $status after SIGINT"
}

# clean NAME...: no errors, warnings or criticals in their output, but
# for the rtpsession race of GStreamer 1.22.0 (fixed in 1.22.5), which
# only cuts a round of RTCP reports short
RTPSESSION_RACE="g_hash_table_foreach: assertion 'version == hash_table->version' failed"
clean () {
  for name in "$@"; do
    ! grep -E '^(ERROR|WARNING)|CRITICAL' "$name.log" \
      | grep -vF "$RTPSESSION_RACE" | head -n 3 | grep . \
      || fail "$name printed errors or warnings"
  done
}
)sh";

/* The test pattern, and a watcher that sees and hears it. */
const char *WATCH = R"sh(
server
launch pub publish-test-pattern.sh THREAD=watch "VIDEO_CAPS=$CAPS"
session_id pub pub s
note "publisher id $pub"
launch watch watch-room.sh THREAD=watch \
  "VIDEO_SINK=fakesink name=video-out silent=false $FAKE" \
  "AUDIO_SINK=fakesink name=audio-out silent=false $FAKE"
media watch "$pub" video
media watch "$pub" audio
wait_count watch 'video-out: last-message = chain' 30 20
wait_count watch 'audio-out: last-message = chain' 30 20
wait_for watch '(video-out:sink) E (type: caps (12814), GstEventCaps, caps=(GstCaps)"video/x-raw\,\ format\=\(string\)I420\,\ width\=\(int\)320\,\ height\=\(int\)240' 5
note "watcher: $(count watch 'video-out: last-message = chain') video frames, $(count watch 'audio-out: last-message = chain') audio buffers"
stop watch
stop pub
clean pub watch
)sh";

/* watch-room.sh with its default video sink on a machine with no display:
 * it must not crash (autovideosink falls back to dfbvideosink there), but
 * say where the video goes and keep receiving it until Ctrl-C. */
const char *HEADLESS = R"sh(
server
launch pub publish-test-pattern.sh THREAD=headless "VIDEO_CAPS=$CAPS"
session_id pub pub s
note "$name: no DISPLAY, no WAYLAND_DISPLAY, VIDEO_SINK unset"
name=watch
env -u DISPLAY -u WAYLAND_DISPLAY -u VIDEO_SINK THREAD=headless \
  "AUDIO_SINK=fakesink name=audio-out silent=false $FAKE" \
  "$EXAMPLES/watch-room.sh" -m -v > watch.log 2>&1 &
echo $! > watch.pid
media watch "$pub" video
wait_for watch 'watch-room.sh: no display' 5
# Pictures reach the default sink: its pad's caps, and it keeps running.
wait_for watch 'GstFakeVideoSink:fakevideosink0/GstFakeSink:sink.GstPad:sink: caps = video/x-raw, format=(string)I420, width=(int)320' 20
wait_count watch 'audio-out: last-message = chain' 30 20
sleep 1
running watch || fail "watch-room.sh ended without a display: $(tail -n 3 watch.log)"
stop watch
stop pub
)sh";

/* A camera and a microphone (test sources here), scaled to 640x480. */
const char *CAMERA = R"sh(
server
launch cam publish-camera.sh THREAD=camera \
  "VIDEO_SOURCE=videotestsrc is-live=true ! $CAPS" \
  "AUDIO_SOURCE=audiotestsrc is-live=true wave=ticks"
session_id cam cam s
note "camera id $cam"
launch watch watch-room.sh THREAD=camera \
  "VIDEO_SINK=fakesink name=video-out silent=false $FAKE" \
  "AUDIO_SINK=fakesink name=audio-out silent=false $FAKE"
media watch "$cam" video
media watch "$cam" audio
wait_count watch 'video-out: last-message = chain' 30 20
wait_count watch 'audio-out: last-message = chain' 30 20
# What reached the sink, as the sink itself reports it (the -v line for its
# pad's caps is not always printed).
wait_for watch '(video-out:sink) E (type: caps (12814), GstEventCaps, caps=(GstCaps)"video/x-raw\,\ format\=\(string\)I420\,\ width\=\(int\)640\,\ height\=\(int\)480' 5
note "watcher: $(count watch 'video-out: last-message = chain') video frames at 640x480, $(count watch 'audio-out: last-message = chain') audio buffers"
stop watch
stop cam
clean cam watch
)sh";

/* A recording of the test pattern, stopped with Ctrl-C; the file is
 * checked afterwards. */
const char *RECORD = R"sh(
server
launch pub publish-test-pattern.sh THREAD=record "VIDEO_CAPS=$CAPS"
session_id pub pub s
launch rec record-room.sh THREAD=record OUTPUT=room.mkv WIDTH=320 HEIGHT=240
media rec "$pub" video
media rec "$pub" audio
sleep 2
stop pub
sleep 2
stop rec
clean pub rec
[ -s room.mkv ] || fail "record-room.sh wrote no room.mkv"
note "room.mkv: $(wc -c < room.mkv) bytes"
)sh";

/* A bridge from thread A to thread B, and a watcher in B that sees the
 * publisher of A, which is not in B: a magenta picture, which only that
 * publisher makes. */
const char *BRIDGE = R"sh(
server
launch pub publish-test-pattern.sh THREAD=bridge-a "VIDEO_CAPS=$CAPS" \
  "VIDEO_SOURCE=videotestsrc is-live=true pattern=solid-color foreground-color=0xffff00ff"
session_id pub pub s
launch bridge bridge-rooms.sh THREAD_A=bridge-a THREAD_B=bridge-b
session_id bridge_in bridge a
session_id bridge_out bridge b
note "publisher $pub; bridge $bridge_in in A, $bridge_out in B"
media bridge "$pub" video
launch watch watch-room.sh THREAD=bridge-b \
  "VIDEO_SINK=videoscale ! video/x-raw,width=4,height=4 ! videoconvert ! video/x-raw,format=RGB ! fakesink name=video-out dump=true $FAKE" \
  "AUDIO_SINK=fakesink name=audio-out $FAKE"
media watch "$bridge_out" video
wait_count watch '00000000 (' 30 20
wait_for watch 'GstFakeSink:video-out.GstPad:sink: caps = video/x-raw, width=(int)4, height=(int)4' 5
# The bridge's picture whole: a member may start on a smaller layer under
# load and climbs within seconds (docs/elements.md, Layers: 6 to 15 s from
# the bottom one); a CI run saw 80x60, then 160x120, not 320x240 in 5 s.
wait_for watch "GstPeerJSSrc:r.GstGhostPad:video_$bridge_out: caps = video/x-raw, format=(string)I420, width=(int)320, height=(int)240" 20
! grep -F "member=(string)$pub" watch.log | grep -F peerjs-media-connect \
  || fail "the publisher of thread A connected to the watcher in thread B"
# Each frame, scaled to 4x4 RGB, is dumped in lines of 16 bytes:
# "OFFSET (ADDRESS): 16 hex bytes  ascii". Every pixel must be magenta.
set -- $(grep '^000000[0-9a-f]0 (' watch.log \
  | sed 's/^\([0-9a-f]*\) ([^)]*): \(.\{48\}\).*/\1 \2/' \
  | awk 'function hex(s,  i, n) {
           n = 0
           for (i = 1; i <= length(s); i++)
             n = n * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
           return n
         }
         { off = hex($1); if (off == 0) frames++
           for (i = 2; i <= NF; i++) {
             k = (off + i - 2) % 3; v = hex($i)
             if ((k != 1 && v < 192) || (k == 1 && v > 64)) bad[frames] = 1
           } }
         END { n = 0; for (f in bad) n++; print frames + 0, n }')
note "watcher in B: $1 frames, $2 of them not magenta"
[ "$2" = 0 ] || fail "$2 of $1 frames in thread B are not the magenta of thread A"
stop watch
stop bridge
stop pub
clean pub bridge watch
)sh";

/* An RTSP camera (tests/rtsp/rtsp-camera.c: H.264 over RTSP) bridged into
 * a thread: a watcher decodes its picture, and the bridge's pipeline has no
 * decoder or encoder (its -v output names every element that negotiated
 * caps). */
const char *RTSP = R"sh(
server
"$PEERJS_RTSP_CAMERA" 0 320x240@15 > camera.log 2>&1 &
echo $! > camera.pid
wait_for camera 'rtsp-camera serving rtsp://' 10
url=$(sed -n 's/^rtsp-camera serving //p' camera.log | head -n 1)
note "camera at $url"
launch bridge bridge-rtsp-camera.sh THREAD=cams "CAMERA=$url" "NAME=front door"
session_id cam bridge s
launch watch watch-room.sh THREAD=cams \
  "VIDEO_SINK=fakesink name=video-out silent=false $FAKE" \
  "AUDIO_SINK=fakesink name=audio-out $FAKE"
media watch "$cam" video
wait_count watch 'video-out: last-message = chain' 30 20
wait_for watch '(video-out:sink) E (type: caps (12814), GstEventCaps, caps=(GstCaps)"video/x-raw\,\ format\=\(string\)I420\,\ width\=\(int\)320\,\ height\=\(int\)240' 5
note "watcher: $(count watch 'video-out: last-message = chain') frames of the camera"
wait_for bridge 'GstH264Parse' 5
# Video decoders and encoders by their type names (as -v prints them: the
# receiver's decoder shows up so).
coders () {
  grep -oE '/(Gst(X264Enc|Openh264(Enc|Dec)|VP[89](Enc|Dec)|AV1(Enc|Dec)|Va[A-Za-z0-9]*(Enc|Dec)|Nv[A-Za-z0-9]*(Enc|Dec)|V4l2[A-Za-z0-9]*(Enc|Dec))|avdec_[a-z0-9]*|avenc_[a-z0-9]*):' "$1.log" \
    | sort -u | tr '\n' ' '
}
[ -n "$(coders watch)" ] || fail "no decoder named in the watcher's output: the check below would see none either"
[ -z "$(coders bridge)" ] || fail "the bridge decodes or encodes: $(coders bridge)"
note "the watcher decodes with $(coders watch); the bridge has no decoder or encoder"
note "the bridge's elements: $(grep -oE '/Gst[A-Za-z0-9]*:[a-z0-9_-]*' bridge.log | sed 's/:.*//' | sort -u | tr '\n' ' ')"
stop watch
stop bridge
kill "$(cat camera.pid)"
clean bridge watch
)sh";

/* A file shared by one script and kept by the other, byte for byte; a
 * file in DIR only once complete. */
const char *FILES = R"sh(
server
head -c 3000000 /dev/urandom > shared.bin
launch inbox receive-files.sh THREAD=files DIR=inbox
session_id inbox inbox peerjssrc0
launch share share-file.sh THREAD=files FILE=shared.bin
session_id share share peerjssink0
wait_for share 'peerjs-file-offered' 20
wait_for inbox "peerjs-file-complete" 30
cmp shared.bin inbox/shared.bin || fail "inbox/shared.bin differs from shared.bin"
sha=$(sha256sum shared.bin | cut -d' ' -f1)
wait_for inbox "sha256=(string)$sha" 5
wait_for share "peerjs-file-complete" 10
[ "$(ls -A inbox)" = shared.bin ] || fail "inbox holds more than shared.bin: $(ls -A inbox)"
note "shared.bin (3000000 bytes) arrived, SHA-256 $sha"
stop inbox
stop share
clean share inbox
)sh";

/* tools/run on a port another server holds: it must say so and give up
 * at once, and start nothing (no pipeline publishing into the other
 * server's room, no second server). Its --help names its variables. */
const char *RUN_BUSY = R"sh(
ROOT=$(cd "$EXAMPLES/../.." && pwd)
BUILD="$PEERJS_BUILD_ROOT" "$ROOT/tools/run" --help > help.log 2>&1 \
  || fail "tools/run --help exited $?"
for word in PORT= ROOM= AUTH_TOKEN= --auth-secret; do
  grep -qF -- "$word" help.log || fail "tools/run --help does not mention $word"
done
"$PEERJS_SIGNALLING" --port 5000 > other.log 2>&1 &
echo $! > other.pid
wait_for other 'listening on http://localhost:5000/' 10
t0=$(date +%s%N)
PORT=5000 BUILD="$PEERJS_BUILD_ROOT" timeout 30 "$ROOT/tools/run" > run.log 2>&1
status=$?
ms=$((($(date +%s%N) - t0) / 1000000))
note "tools/run exited $status after $ms ms: $(tail -n 1 run.log)"
[ "$status" != 124 ] || fail "tools/run was still running 30 s after it started"
[ "$status" != 0 ] || fail "tools/run exited 0 with port 5000 taken"
[ "$ms" -lt 5000 ] || fail "tools/run took $ms ms to give up"
grep -qF 'port 5000 is in use' run.log || fail "tools/run did not say that port 5000 is in use"
# This PID namespace holds the scenario's processes only.
others=""
for p in /proc/[0-9]*; do
  comm=$(cat "$p/comm" 2>/dev/null) || continue
  case "$comm" in
    gst-launch-1.0) others="$others gst-launch-1.0(${p#/proc/})" ;;
    peerjs-signalli*) [ "${p#/proc/}" = "$(cat other.pid)" ] \
      || others="$others peerjs-signalling(${p#/proc/})" ;;
  esac
done
[ -z "$others" ] || fail "tools/run left running:$others"
curl -fs http://127.0.0.1:5000/metrics | grep -qx 'peerjs_sessions 0' \
  || fail "the other server got a session: $(curl -fs http://127.0.0.1:5000/metrics | grep '^peerjs_sessions ')"
running other || fail "the other server is gone"
)sh";

/* tools/run as it is meant to be used: the server answers, the pipeline
 * joins the room "gst-demo" with video and audio, and SIGTERM (as Ctrl-C)
 * stops both and leaves no process. */
const char *RUN = R"sh(
ROOT=$(cd "$EXAMPLES/../.." && pwd)
PORT=5000 BUILD="$PEERJS_BUILD_ROOT" "$ROOT/tools/run" > run.log 2>&1 &
echo $! > run.pid
wait_for run 'http://localhost:5000/#gst-demo' 20
i=0
until curl -fs http://127.0.0.1:5000/metrics | grep -qx 'peerjs_sessions 1'; do
  i=$((i + 1))
  [ "$i" -le 100 ] || fail "the pipeline did not join within 10 s: $(curl -fs http://127.0.0.1:5000/metrics | grep '^peerjs_sessions')"
  sleep 0.1
done
note "the pipeline joined the server tools/run started"
pid=$(cat run.pid)
kill -TERM "$pid"
i=0
while kill -0 "$pid" 2>/dev/null; do
  i=$((i + 1))
  [ "$i" -le 150 ] || fail "tools/run did not exit within 15 s of SIGTERM"
  sleep 0.1
done
wait_for run 'peerjs-signalling: shutting down' 2
left=""
for p in /proc/[0-9]*; do
  comm=$(cat "$p/comm" 2>/dev/null) || continue
  case "$comm" in
    gst-launch-1.0|peerjs-signalli*|tee) left="$left $comm(${p#/proc/})" ;;
  esac
done
[ -z "$left" ] || fail "tools/run left running:$left"
)sh";

/* `meson install` into a staging directory: the plugin in GStreamer's own
 * plugin directory (where gst-inspect-1.0 finds it with no
 * GST_PLUGIN_PATH), the server, its web files and the systemd unit; the
 * installed server, with the staged prefix mounted in place (this mount
 * namespace only), serves the installed web files by default. */
const char *INSTALL = R"sh(
ROOT=$(cd "$EXAMPLES/../.." && pwd)
DEST="$WORK/dest"
meson install -C "$PEERJS_BUILD_ROOT" --destdir "$DEST" --no-rebuild --quiet \
  > install.log 2>&1 || fail "meson install exited $?: $(tail -n 3 install.log)"
gstdir=$(pkg-config --variable=pluginsdir gstreamer-1.0)
[ "$PEERJS_PLUGINDIR" = "$gstdir" ] \
  || note "configured with -Dplugindir=$PEERJS_PLUGINDIR (GStreamer's: $gstdir)"
[ -f "$DEST$PEERJS_PLUGINDIR/libgstpeerjs.so" ] \
  || fail "no libgstpeerjs.so in $PEERJS_PLUGINDIR; installed: $(cd "$DEST" && find . -name 'libgstpeerjs*')"
GST_PLUGIN_SYSTEM_PATH_1_0="$DEST$gstdir" GST_PLUGIN_PATH= GST_REGISTRY="$WORK/registry.bin" \
  gst-inspect-1.0 peerjssink > inspect.log 2>&1 \
  || fail "gst-inspect-1.0 finds no peerjssink in GStreamer's plugin directory $gstdir"
P="$DEST$PEERJS_PREFIX"
for f in index.html peer.js demo.js demo.css; do
  cmp -s "$ROOT/signalling/web/$f" "$P/share/peerjs/web/$f" \
    || fail "share/peerjs/web/$f is missing or differs from signalling/web/$f"
done
unit="$DEST$PEERJS_UNITDIR/peerjs-signalling.service"
[ -f "$unit" ] || fail "no peerjs-signalling.service in $PEERJS_UNITDIR"
grep -qx "ExecStart=$PEERJS_PREFIX/bin/peerjs-signalling .*" "$unit" \
  || fail "the unit does not start $PEERJS_PREFIX/bin/peerjs-signalling: $(grep ExecStart "$unit")"
mkdir -p "$PEERJS_PREFIX" 2>/dev/null
mount --bind "$P" "$PEERJS_PREFIX" || fail "cannot mount $P on $PEERJS_PREFIX"
"$PEERJS_PREFIX/bin/peerjs-signalling" --host 127.0.0.1 --port 0 > installed.log 2>&1 &
echo $! > installed.pid
wait_for installed 'listening on http://127.0.0.1:' 10
wait_for installed "serving $PEERJS_PREFIX/share/peerjs/web" 2
port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' installed.log | head -n 1)
curl -fs "http://127.0.0.1:$port/peer.js" | cmp -s - "$ROOT/signalling/web/peer.js" \
  || fail "the installed server does not serve peer.js"
note "installed: $(cd "$DEST" && find . -type f | grep -v '/include/' | sort | tr '\n' ' ')"
stop installed
)sh";

/* rm -r, for what an earlier run of a scenario left. */
void
remove_tree (const std::string & path)
{
  if (g_file_test (path.c_str (), G_FILE_TEST_IS_DIR)
      && !g_file_test (path.c_str (), G_FILE_TEST_IS_SYMLINK)) {
    GDir *dir = g_dir_open (path.c_str (), 0, nullptr);
    if (dir) {
      while (const char *name = g_dir_read_name (dir))
        remove_tree (path + G_DIR_SEPARATOR_S + name);
      g_dir_close (dir);
    }
    g_rmdir (path.c_str ());
  } else {
    g_unlink (path.c_str ());
  }
}

/* An empty directory for a scenario's logs and files. */
std::string
scenario_dir (const char *name)
{
  const char *artifacts = g_getenv ("PEERJS_ARTIFACTS");
  if (!artifacts) {
    g_autofree char *tmp = g_dir_make_tmp ("peerjs-examples-XXXXXX", nullptr);
    return tmp ? tmp : "";
  }
  std::string dir = std::string (artifacts) + G_DIR_SEPARATOR_S + "examples-"
      + name;
  remove_tree (dir);
  if (g_mkdir_with_parents (dir.c_str (), 0755) != 0)
    return "";
  return dir;
}

/* Runs one scenario; returns its directory. Fails the test case unless
 * the scenario exits 0. */
std::string
run_scenario (const char *name, const char *body)
{
  std::string dir = scenario_dir (name);
  fail_if (dir.empty (), "cannot make a directory for scenario %s", name);
  g_autofree char *q_dir = g_shell_quote (dir.c_str ());
  g_autofree char *q_examples = g_shell_quote (examples_dir.c_str ());
  std::string script = std::string ("# scenario ") + name + "\nWORK=" + q_dir
      + "\nEXAMPLES=" + q_examples + "\n" + PRELUDE + body;
  std::string path = dir + G_DIR_SEPARATOR_S + "scenario.sh";
  fail_unless (g_file_set_contents (path.c_str (), script.c_str (), -1,
          nullptr), "cannot write %s", path.c_str ());

  g_autofree char *q_path = g_shell_quote (path.c_str ());
  Run r = run (namespace_argv (std::string ("exec bash ") + q_path), dir,
      SCENARIO_TIMEOUT_S);
  if (exited_0 (r)) {
    /* Its notes (ids, frame counts) for the test log. */
    g_print ("examples scenario %s passed in %.1f s\n%s", name, r.seconds,
        r.output.c_str ());
    return dir;
  }
  g_printerr ("\n===== examples scenario %s %s after %.1f s (logs in %s); "
      "its output:\n%s===== end of %s\n", name, describe_status (r).c_str (),
      r.seconds, dir.c_str (), r.output.c_str (), name);
  ck_abort_msg ("examples scenario %s %s: %s", name,
      describe_status (r).c_str (), first_fail (r.output).c_str ());
  return dir;
}

/* examples/pipelines: $PEERJS_EXAMPLES, else next to $PEERJS_TEST_DATA
 * (tests/data in the source tree). */
std::string
find_examples ()
{
  if (const char *dir = g_getenv ("PEERJS_EXAMPLES"))
    return dir;
  const char *data = g_getenv ("PEERJS_TEST_DATA");
  if (!data)
    return "";
  g_autofree char *tests = g_path_get_dirname (data);
  g_autofree char *root = g_path_get_dirname (tests);
  g_autofree char *dir = g_build_filename (root, "examples", "pipelines",
      nullptr);
  return dir;
}

}  // namespace

GST_START_TEST (test_bridge_rtsp_camera)
{
  if (!g_getenv ("PEERJS_RTSP_CAMERA")) {
    g_print ("SKIP: no rtsp-camera (gst-rtsp-server was not found at "
        "build time: libgstrtspserver-1.0-dev)\n");
    return;
  }
  run_scenario ("bridge-rtsp-camera", RTSP);
}
GST_END_TEST;

GST_START_TEST (test_watch_room)
{
  run_scenario ("watch-room", WATCH);
}
GST_END_TEST;

GST_START_TEST (test_watch_room_headless)
{
  run_scenario ("watch-room-headless", HEADLESS);
}
GST_END_TEST;

GST_START_TEST (test_publish_camera)
{
  run_scenario ("publish-camera", CAMERA);
}
GST_END_TEST;

GST_START_TEST (test_record_room)
{
  std::string dir = run_scenario ("record-room", RECORD);
  std::string file = dir + G_DIR_SEPARATOR_S + "room.mkv";
  g_autofree char *uri = gst_filename_to_uri (file.c_str (), nullptr);
  g_autoptr (GError) error = nullptr;
  g_autoptr (GstDiscoverer) discoverer =
      gst_discoverer_new (10 * GST_SECOND, &error);
  fail_unless (discoverer != nullptr, "no GstDiscoverer: %s",
      error ? error->message : "?");
  g_autoptr (GstDiscovererInfo) info =
      gst_discoverer_discover_uri (discoverer, uri, &error);
  fail_unless (info != nullptr
      && gst_discoverer_info_get_result (info) == GST_DISCOVERER_OK,
      "%s cannot be read: %s", file.c_str (), error ? error->message : "?");

  GstClockTime duration = gst_discoverer_info_get_duration (info);
  GList *videos = gst_discoverer_info_get_video_streams (info);
  GList *audios = gst_discoverer_info_get_audio_streams (info);
  g_print ("room.mkv: %u video and %u audio streams, %" GST_TIME_FORMAT "\n",
      g_list_length (videos), g_list_length (audios),
      GST_TIME_ARGS (duration));
  fail_unless_equals_int (g_list_length (videos), 1);
  fail_unless_equals_int (g_list_length (audios), 1);
  auto *video = GST_DISCOVERER_VIDEO_INFO (videos->data);
  g_autoptr (GstCaps) video_caps =
      gst_discoverer_stream_info_get_caps (GST_DISCOVERER_STREAM_INFO (video));
  g_autoptr (GstCaps) audio_caps = gst_discoverer_stream_info_get_caps (
      GST_DISCOVERER_STREAM_INFO (audios->data));
  g_autofree char *vc = gst_caps_to_string (video_caps);
  g_autofree char *ac = gst_caps_to_string (audio_caps);
  fail_unless (gst_structure_has_name (gst_caps_get_structure (video_caps, 0),
          "video/x-vp8"), "the video is %s, not VP8", vc);
  fail_unless (gst_structure_has_name (gst_caps_get_structure (audio_caps, 0),
          "audio/x-opus"), "the audio is %s, not Opus", ac);
  fail_unless_equals_int (gst_discoverer_video_info_get_width (video), 320);
  fail_unless_equals_int (gst_discoverer_video_info_get_height (video), 240);
  /* About 4 s were recorded. */
  fail_unless (GST_CLOCK_TIME_IS_VALID (duration) && duration > 2 * GST_SECOND,
      "room.mkv lasts %" GST_TIME_FORMAT ", not more than 2 s",
      GST_TIME_ARGS (duration));
  gst_discoverer_stream_info_list_free (videos);
  gst_discoverer_stream_info_list_free (audios);
}
GST_END_TEST;

GST_START_TEST (test_bridge_rooms)
{
  run_scenario ("bridge-rooms", BRIDGE);
}
GST_END_TEST;

GST_START_TEST (test_files)
{
  run_scenario ("files", FILES);
}
GST_END_TEST;

GST_START_TEST (test_run_busy_port)
{
  run_scenario ("run-busy-port", RUN_BUSY);
}
GST_END_TEST;

GST_START_TEST (test_run)
{
  run_scenario ("run", RUN);
}
GST_END_TEST;

GST_START_TEST (test_install)
{
  run_scenario ("install", INSTALL);
}
GST_END_TEST;

/* The docs' tables render: each run of table rows (lines starting with
 * "|", outside code fences) starts with a header row and a delimiter row.
 * A blank line inside a table, or rows put after a paragraph, make rows
 * that Markdown shows as plain text. */
GST_START_TEST (test_docs_tables)
{
  g_autofree char *root_c = g_path_get_dirname (examples_dir.c_str ());
  g_autofree char *root = g_path_get_dirname (root_c);
  std::vector<std::string> files = { std::string (root) + "/README.md" };
  g_autofree char *docs = g_build_filename (root, "docs", nullptr);
  GDir *dir = g_dir_open (docs, 0, nullptr);
  fail_unless (dir != nullptr, "no docs/ at %s", docs);
  while (const char *name = g_dir_read_name (dir))
    if (g_str_has_suffix (name, ".md"))
      files.push_back (std::string (docs) + "/" + name);
  g_dir_close (dir);
  std::string bad;
  int tables = 0;
  for (const auto & file : files) {
    g_autofree char *text = nullptr;
    fail_unless (g_file_get_contents (file.c_str (), &text, nullptr, nullptr),
        "cannot read %s", file.c_str ());
    g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
    bool fence = false;
    for (guint i = 0; lines[i]; i++) {
      if (g_str_has_prefix (lines[i], "```"))
        fence = !fence;
      if (fence || lines[i][0] != '|' || (i > 0 && lines[i - 1][0] == '|'))
        continue;
      /* The first row of a run. */
      tables++;
      const char *next = lines[i + 1];
      if (!next || !(g_str_has_prefix (next, "|---")
              || g_str_has_prefix (next, "|:-") || g_str_has_prefix (next, "| -")))
        bad += "\n  " + file.substr (file.rfind ('/') + 1) + ":"
            + std::to_string (i + 1) + ": rows without a header: "
            + std::string (lines[i]).substr (0, 60);
    }
  }
  g_print ("docs: %d tables in %zu files\n", tables, files.size ());
  fail_unless (bad.empty (), "tables that do not render:%s", bad.c_str ());
}
GST_END_TEST;

static Suite *
examples_suite (void)
{
  Suite *s = suite_create ("examples");
  TCase *tc = tcase_create ("pipelines");
  tcase_set_timeout (tc, SCENARIO_TIMEOUT_S + 20);
  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_watch_room);
  tcase_add_test (tc, test_watch_room_headless);
  tcase_add_test (tc, test_publish_camera);
  tcase_add_test (tc, test_record_room);
  tcase_add_test (tc, test_bridge_rooms);
  tcase_add_test (tc, test_bridge_rtsp_camera);
  tcase_add_test (tc, test_files);
  TCase *tools = tcase_create ("tools");
  tcase_set_timeout (tools, SCENARIO_TIMEOUT_S + 20);
  suite_add_tcase (s, tools);
  tcase_add_test (tools, test_run_busy_port);
  tcase_add_test (tools, test_run);
  tcase_add_test (tools, test_install);
  tcase_add_test (tools, test_docs_tables);
  return s;
}

int
main (int argc, char **argv)
{
  gst_check_init (&argc, &argv);
  std::string missing = sandbox_prerequisite ();
  if (!missing.empty ()) {
    g_print ("examples: SKIP: %s\n", missing.c_str ());
    return 77;   /* meson: skipped */
  }
  examples_dir = find_examples ();
  if (examples_dir.empty () || !g_file_test ((examples_dir +
              "/watch-room.sh").c_str (), G_FILE_TEST_EXISTS)) {
    g_printerr ("examples: no examples/pipelines (set PEERJS_TEST_DATA or "
        "PEERJS_EXAMPLES; run through meson test)\n");
    return 1;
  }
  if (!g_getenv ("PEERJS_SIGNALLING")) {
    g_printerr ("examples: PEERJS_SIGNALLING is not set (run through meson "
        "test)\n");
    return 1;
  }
  return gst_check_run_suite (examples_suite (), "examples", __FILE__);
}
