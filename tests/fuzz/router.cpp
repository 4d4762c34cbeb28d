/* libFuzzer target: arbitrary frames from three sessions into the router,
 * with drops, ticks and resumes in between. "@A", "@B", "@C" in the input
 * stand for the three live session ids; the first byte picks the action.
 * Build with clang: CXX=clang++ meson setup build-fuzz -Dfuzz=enabled,
 * then build-fuzz/tests/fuzz/fuzz-router -max_total_time=60 CORPUS_DIR. */
#include "router.h"
#include <cstdint>
#include <string>
using namespace peerjs;
static Router *r;
static std::string ids[3];
static std::int64_t now = 0;
static void ensure () {
  for (auto &id : ids)
    if (id.empty () || !r->has_session (id)) id = r->open ("", -1, now).session;
}
extern "C" int LLVMFuzzerTestOneInput (const uint8_t *d, size_t n) {
  if (!r) {
    RouterLimits l;
    l.max_pending_callbacks = 3; l.away_messages = 3; l.max_tags_per_session = 3;
    l.max_watches_per_session = 3; l.max_threads_per_session = 3; l.max_members_per_thread = 3;
    l.protocol.max_message_size = 4096; l.grace_us = 10;
    r = new Router (l, "fuzz-secret");
  }
  ensure ();
  if (n < 1) return 0;
  std::string text ((const char *) d + 1, n - 1);
  for (int k = 0; k < 3; k++) {
    std::string tag = std::string ("@") + char ('A' + k);
    for (size_t p; (p = text.find (tag)) != std::string::npos;) text.replace (p, 2, ids[k]);
  }
  switch (d[0] % 8) {
    case 0: r->drop (ids[d[0] / 8 % 3], now); break;
    case 1: now += 20; r->tick (now); break;
    case 2: r->open (r->token_for (ids[d[0] / 8 % 3]), (d[0] / 24) - 1, now); break;
    default: r->receive (ids[d[0] % 3], text, now);
  }
  return 0;
}
