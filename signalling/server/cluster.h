/* Cluster mode (--redis): several peerjs-signalling nodes share threads
 * through one Redis. docs/scaling.md describes the design; in short:
 *
 * - every node refreshes a heartbeat key pj:node:ID with a TTL, and keeps
 *   its sessions in the directory (pj:session:ID -> node, with a TTL);
 * - thread membership lives in a hash per thread (pj:thread:NAME, session
 *   -> node); joins and leaves are Lua scripts that change it and publish
 *   the notice to the other nodes with members, in one atomic step;
 * - messages for a session of another node go to that node's own channel
 *   (pj:to:ID), batched per node and per main-loop turn;
 * - a node whose heartbeat key expired is gone: the others end the
 *   stand-ins of its sessions, as one node ends a session.
 *
 * hiredis's async API runs on the server's Poller (an adapter of our own,
 * as the server's sockets do), so Redis never blocks the loop; host names
 * are resolved with GResolver's async lookup.
 */
#pragma once

#include "poller.h"
#include "router.h"

#include <glib.h>
#include <gio/gio.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <iterator>
#include <list>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

struct redisAsyncContext;

namespace peerjs {

/* Where Redis is: redis://HOST[:PORT][/DB] or unix:/PATH[?db=N]. */
struct RedisAddress
{
  std::string host;            /* empty for a unix socket */
  int port = 6379;
  std::string path;            /* the unix socket */
  int db = 0;
};

/* false with `why` (one line) if `url` is not one of the two forms. */
bool parse_redis_url (std::string_view url, RedisAddress & out,
    std::string & why);
/* Letters, digits, '.', '_' and '-', 1 to 64 of them. */
bool valid_node_id (std::string_view id);
/* HOSTNAME-PID-RANDOM, cut to a valid node id. */
std::string default_node_id ();

struct ClusterOptions
{
  RedisAddress redis;
  std::string node_id;
  std::int64_t heartbeat_ms = 1000;  /* refresh and liveness checks */
  std::int64_t node_ttl_ms = 5000;   /* the heartbeat key's TTL */
  std::int64_t session_ttl_s = 30;   /* directory entries, refreshed every 10 s */
  std::int64_t connect_timeout_ms = 3000;
  /* The sessions of a node found gone wait this long to resume
   * elsewhere (the router's grace period). */
  std::int64_t grace_ms = 30000;
  /* A node asked for a session it holds answers within this, or the
   * client gets a new session. */
  std::int64_t claim_timeout_ms = 3000;
  /* Messages for other nodes kept while Redis cannot be reached (and
   * not yet answered by it), at most; past this their senders get
   * queue-full. */
  std::size_t outage_bytes = 8 * 1024 * 1024;
};

struct ClusterStats
{
  std::uint64_t sent = 0;            /* messages for sessions of other nodes */
  std::uint64_t received = 0;        /* messages from other nodes, delivered here */
  std::uint64_t publishes = 0;       /* envelopes published */
  std::uint64_t dropped = 0;         /* not sent: the outage buffer was full */
  std::uint64_t replayed = 0;        /* kept during an outage, sent after it */
  std::uint64_t rejoins = 0;         /* memberships announced again */
  std::uint64_t recovered = 0;       /* batches read back after an outage */
  std::uint64_t nodes_back = 0;      /* nodes taken for gone that were not */
  std::uint64_t nodes_lost = 0;      /* nodes whose heartbeat expired */
  std::uint64_t reconnects = 0;      /* connections to Redis after the first */
  std::uint64_t heartbeats_missed = 0;   /* our own key had expired */
  std::uint64_t id_clashes = 0;      /* our key written by another process */
  std::uint64_t lookups = 0;         /* ids looked up in the directory */
  std::uint64_t lookups_missed = 0;  /* ... and not found there */
  std::uint64_t handed_over = 0;     /* sessions that resumed on another node */
  std::uint64_t taken_over = 0;      /* sessions of other nodes resumed here */
  std::uint64_t state_writes = 0;    /* batches of session state written */
  std::uint64_t undelivered = 0;     /* batches for a node not listening, kept */
  /* From an envelope's publication to its receipt: a histogram over
   * LATENCY_BOUNDS (the last bucket is everything above). */
  static constexpr double LATENCY_BOUNDS[] = {0.0001, 0.00025, 0.0005, 0.001,
    0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};
  std::uint64_t latency_buckets[std::size (LATENCY_BOUNDS) + 1] = {};
  std::uint64_t latency_count = 0;
  double latency_sum_s = 0;
};

class Cluster
{
public:
  using Dispatch = std::function<void (const std::vector<Delivery> &)>;

  Cluster (ClusterOptions options, Router & router, Poller & poller,
      GMainContext * context, Dispatch dispatch);
  ~Cluster ();
  Cluster (const Cluster &) = delete;
  Cluster & operator= (const Cluster &) = delete;

  /* Install the router's hooks, connect, start the heartbeat. */
  void start ();
  /* A session of this node opened or resumed: into the directory now. */
  void session_opened (const std::string & session);
  /* A client resumes `session`, which this node does not hold: bring it
   * here from its node (alive: handed over; gone: from what Redis keeps),
   * then `done` (with the session adopted by the router, or not when it
   * cannot be had: it then starts afresh). */
  void claim (const std::string & session, std::function<void ()> done);
  /* Told when a session of this node resumed on another: its connection
   * here, if any, is to be closed. */
  void set_moved_away (std::function<void (const std::string &)> fn)
  {
    moved_away_ = std::move (fn);
  }

  /* Both connections up and the last heartbeat answered in time. */
  bool healthy () const;
  const std::string & node_id () const { return options_.node_id; }
  const ClusterStats & stats () const { return stats_; }
  /* Prometheus text for /metrics. */
  std::string metrics () const;

  struct Link;
  struct Lookup;

  /* What an ordered command's answer is for. */
  enum class Answer
  {
    None,
    Join,        /* a, b: thread, session */
    Rejoin,      /* a, b: thread, session: a membership announced again */
    Watch,       /* a, b: watcher, tag */
    Publish,
  };
  /* A command whose order matters (joins, leaves, ends, tags, watches,
   * batches of messages): sent in turn, kept while Redis cannot be
   * reached and until Redis answered it, and sent again in the same
   * order after a reconnect (docs/scaling.md, Redis unreachable). */
  struct Ordered
  {
    std::vector<std::string> argv;
    Answer answer = Answer::None;
    std::string a, b;
    /* Rejoin: the members of other nodes known here when it was sent. */
    std::vector<std::string> known;
    std::size_t bytes = 0;       /* a batch's size, for outage_bytes */
  };

private:
  /* A message for a session whose directory lookup is still under way
   * waits behind it, so that what one session sends another arrives in
   * order. */
  struct Waiting
  {
    bool pending = false;        /* the lookup's own message, not back yet */
    bool drop = false;           /* the lookup found nobody */
    std::string node, from, body;
  };

  struct Outbox
  {
    std::string ops;             /* encoded, complete */
    bool open = false;           /* a 'd' op still taking recipients */
    std::string from, body;
    std::vector<std::string> to;
    std::set<std::string> ids;   /* every recipient and callback origin */
  };

  /* One op of an envelope: its letter and fields. */
  struct Op
  {
    char op = 0;
    std::vector<std::string> f;
  };

  /* A session being brought here: what arrives for it meanwhile waits. */
  struct Claim
  {
    std::function<void ()> done;
    std::int64_t since_us = 0;
    std::vector<std::pair<std::string, Op>> held;   /* node, op */
  };

  void connect ();
  void connect_link (Link & l);
  void resolved (GObject * source, GAsyncResult * res);
  void link_up (Link & l);
  void link_down (Link & l);
  void tick ();
  void heartbeat ();
  void refresh_directory ();
  void republish ();
  void check_nodes ();
  void node_gone (const std::string & node);
  void grace_over (const std::string & node, bool back);
  void close_op (Outbox & box);
  Outbox & outbox (const std::string & node);
  void schedule_flush ();
  void flush ();
  void publish ();
  void on_message (std::string_view payload);
  void apply (const std::string & node, Op & op, bool redirected,
      std::vector<Delivery> & out, std::set<std::string> & redirect);
  void ordered (Ordered o, bool sends);
  void resume_ordered ();
  void answered (Ordered & o, void *reply);
  void recover ();
  void recovered (void *reply);
  void rejoin ();
  void revive (const std::string & node);
  void suspect_checked (const std::string & thread, const std::string & member,
      bool there);
  void refuse_all ();
  bool keep (const std::string & from, const std::string & body);
  void announce (const std::string & thread, const std::string & session,
      const std::string & body, char op);
  void persist ();
  void hand_over (const std::string & node, const std::string & session);
  void take_over (const std::string & node, const Op & op);
  void claimed (const std::string & session, void *reply);
  void finish_claim (const std::string & session, const SessionState * state,
      const std::string & from_node, const std::vector<std::string> & lost);
  std::string encode_meta (const SessionState & st) const;
  bool decode_meta (std::string_view blob, SessionState & st) const;
  std::string local_node (const std::string & node) const;
  void put (const std::string & node, const std::string & session,
      const std::string & from, const std::string & body);
  using Carriers = std::vector<std::pair<std::string, std::string>>;
  void resolve (Lookup & l, const std::vector<std::string> & nodes,
      const std::vector<Carriers> & id_carriers,
      const std::vector<Carriers> & tag_carriers);
  void drain (const std::string & session);
  std::string envelope_head () const;
  std::string ordered_head ();
  bool fresh (const std::string & instance, const std::string & seq);
  bool command (const std::vector<std::string> & argv,
      void (*fn) (redisAsyncContext *, void *, void *) = nullptr,
      void *privdata = nullptr);

  /* Router hooks. */
  void forward (const std::string & node, const std::string & session,
      const std::string & from, const std::string & body);
  void joined (const std::string & thread, const std::string & session,
      const std::string & body);
  void left (const std::string & thread, const std::string & session,
      bool last);
  void ended (const std::string & session,
      const std::vector<std::pair<std::string, bool>> & threads,
      const std::set<std::string> & nodes);
  void reply (const std::string & node, const std::string & origin,
      const std::string & from, const std::string & body);
  void lookup (const std::string & from, const std::vector<std::string> & ids,
      const std::vector<std::string> & tags, const std::string & body,
      bool answered, std::shared_ptr<const Message> message,
      const std::vector<std::string> & already);
  void tagged (const std::string & session, const std::string & tag,
      bool quiet);
  void watching (const std::string & session, const std::string & tag,
      bool quiet);
  void unpresence (const std::string & session,
      const std::set<std::string> & tags,
      const std::set<std::string> & watched);

  ClusterOptions options_;
  Router & router_;
  Poller & poller_;
  GMainContext *context_;
  Dispatch dispatch_;
  std::unique_ptr<Link> cmd_, sub_;
  std::string resolved_host_;    /* the address of HOST tried now */
  std::vector<std::string> addresses_;   /* what HOST resolved to */
  std::size_t next_address_ = 0; /* tried in turn, once per attempt */
  GCancellable *cancel_ = nullptr;
  bool resolving_ = false;
  bool ever_up_ = false;
  GSource *timer_ = nullptr;
  GSource *flush_source_ = nullptr;
  std::map<std::string, Outbox> outboxes_;
  std::map<std::string, std::list<Waiting>> waiting_;
  std::vector<std::unique_ptr<Lookup>> failed_;   /* answered at the flush */
  bool closing_ = false;
  std::uint64_t ticks_ = 0;
  std::int64_t hb_sent_us_ = 0;  /* unanswered heartbeat, 0: none */
  std::int64_t hb_ok_us_ = 0;
  bool hb_first_ = true;
  std::string instance_;         /* this process, in the heartbeat's value */
  ClusterStats stats_;
  std::function<void (const std::string &)> moved_away_;
  std::map<std::string, Claim> claims_;
  /* Sessions that resumed on another node: what still comes here for
   * them is sent on, until the time given (monotonic). */
  std::map<std::string, std::pair<std::string, std::int64_t>> moved_;
  /* Nodes found gone, and when: their sessions' grace period runs (-1:
   * it is over, and whether the node came back is being asked). */
  std::map<std::string, std::int64_t> dead_;
  /* Local sessions whose state is to be written (true: meta too), and the
   * last outbox entry written for each. */
  std::map<std::string, bool> dirty_;
  std::map<std::string, std::uint64_t> stored_;
  /* Ordered commands: not sent yet (Redis unreachable), and sent but not
   * answered yet. `flowing_`: they go out as they come. */
  std::deque<Ordered> backlog_, inflight_;
  bool flowing_ = false;
  /* The command connection was lost: what it had in flight is sent
   * again. */
  bool cmd_lost_ = false;
  std::uint64_t op_seq_ = 0;
  /* The last ordered command's number seen from each process. */
  std::map<std::string, std::uint64_t> seen_;
  std::size_t held_bytes_ = 0;   /* batches in backlog_ and inflight_ */
  /* Messages not kept (outage_bytes): sender and relay text, told at the
   * flush. */
  std::vector<std::pair<std::string, std::string>> refused_;
  /* Back after an outage: what was published here meanwhile is being read
   * (recover ()); what arrives live waits behind it. */
  bool recovering_ = false;
  /* Connected again: republish () ran; the first heartbeat need not. */
  bool relinked_ = false;
  std::vector<std::string> held_live_;
  /* Redis's run_id when last connected; `restarted_`: it changed at the
   * last connect (Redis lost what it held). */
  std::string run_id_;
  bool restarted_ = false;
  /* Members of other nodes that a rejoin's answer did not name: looked at
   * again two heartbeats later (their leave may still be on its way
   * here). */
  struct Suspect
  {
    std::string thread, member;
    std::int64_t due_us = 0;
  };
  std::vector<Suspect> suspects_;
  /* The thread:connect each local membership was announced with, to
   * announce it again (rejoin ()): session -> thread -> relay text. */
  std::map<std::string, std::map<std::string, std::string>> joins_;

  friend struct ClusterCallbacks;
};

}  // namespace peerjs
