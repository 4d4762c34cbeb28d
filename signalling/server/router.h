/* The signalling server's logic: sessions, threads, presence, callbacks and
 * per-session outboxes, as a state machine with no sockets.
 *
 * Every entry point takes what happened (a connection opened, a text frame
 * arrived, a connection dropped, time passed) and returns what must be sent
 * and to which session. Sessions whose connection is gone keep receiving
 * into their outbox for the grace period, so a resumed session gets what it
 * missed once and in order. Time is passed in (monotonic microseconds), so
 * tests drive it. docs/protocol.md describes the behaviour rule by rule.
 */
#pragma once

#include "auth.h"
#include "ice.h"
#include "message.h"

#include <glib.h>

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace peerjs {

struct RouterLimits
{
  ProtocolLimits protocol;
  std::size_t max_sessions = 50000;
  std::size_t max_threads_per_session = 64;
  std::size_t max_members_per_thread = 1024;
  std::size_t max_tags_per_session = 32;
  std::size_t max_watches_per_session = 64;
  std::size_t max_pending_callbacks = 256;     /* per session */
  std::size_t max_contacts = 4096;             /* per session */
  /* Outbox: messages kept while online for replay after a drop, and the
   * bound on what queues up while the session is away. */
  std::size_t replay_messages = 32;
  std::size_t replay_bytes = 256 * 1024;
  std::size_t away_messages = 512;
  std::size_t away_bytes = 1024 * 1024;
  std::int64_t grace_us = 30 * G_USEC_PER_SEC;
  /* Announced in the greeting; the transport sends the pings. */
  std::int64_t ping_interval_us = 5 * G_USEC_PER_SEC;
};

struct Delivery
{
  std::string session;
  std::shared_ptr<const std::string> text;
};

struct RouterStats
{
  std::uint64_t messages_in = 0;
  std::uint64_t messages_out = 0;     /* deliveries, per recipient */
  std::uint64_t sessions_opened = 0;
  std::uint64_t sessions_resumed = 0;
  std::uint64_t sessions_expired = 0;
  std::uint64_t tokens_expired = 0;   /* sessions ended at their token's exp */
  std::map<std::string, std::uint64_t> errors;   /* by code */
};

struct OpenResult
{
  bool ok = false;            /* false: refused (server full); see deliveries */
  std::string session;
  bool resumed = false;       /* the session existed and was taken over */
  bool replaced = false;      /* it was still online: close the old connection */
  std::string refusal;        /* error text to send before closing, if !ok */
  std::vector<Delivery> deliveries;   /* greeting first, then the replay */
};

/* Cluster mode: a session's state as it moves to another node (resume on
 * another node, docs/scaling.md). */
struct SessionState
{
  std::string id;
  std::uint64_t next_seq = 1;
  std::uint64_t last_sent = 0;
  /* The outbox: sent and kept for replay, then queued while away. */
  std::vector<std::pair<std::uint64_t, std::shared_ptr<const std::string>>> box;
  std::vector<std::string> tags;
  /* Held watches: the tag, and the presence:watch as relayed. */
  std::vector<std::pair<std::string, std::string>> watches;
  /* Sessions it exchanged messages with: id and node ("" for the node
   * the state comes from). */
  std::vector<std::pair<std::string, std::string>> contacts;
  /* The callbacks it waits for, oldest first: the callback id (its key
   * and JSON), and who may answer. */
  struct Callback
  {
    std::string key, json;
    std::vector<std::string> recipients;
  };
  std::vector<Callback> pending;
  /* Its threads, each with its other members (id and node, as contacts). */
  std::vector<std::pair<std::string,
      std::vector<std::pair<std::string, std::string>>>> threads;
};

/* Cluster mode (docs/scaling.md): what the router tells the layer that
 * carries it to other nodes. Sessions held by other nodes appear in the
 * router as stand-ins ("remote" sessions, named with their node) while a
 * local session shares a thread or a contact with them; the router routes
 * to them as to local ones and hands their messages here instead. Every
 * hook runs inside the router call that caused it. Without hooks nothing
 * remote ever exists and the router is the single-node one. */
struct ClusterHooks
{
  /* `body` (relay text, no seq yet) for `session`, held by `node`; `from`
   * is the sending session, empty for the server's own notices. */
  std::function<void (const std::string & node, const std::string & session,
      const std::string & from, const std::string & body)> forward;
  /* A local session joined `thread`, or connected to it again; `body` is
   * its relayed thread:connect, for the members on other nodes. */
  std::function<void (const std::string & thread, const std::string & session,
      const std::string & body)> joined;
  /* A local session left `thread` by thread:disconnect (or lost the grant);
   * `last`: no local member is left in it. */
  std::function<void (const std::string & thread, const std::string & session,
      bool last)> left;
  /* A local session ended. `threads`: those it was in, each with whether
   * it was the last local member; `nodes`: the nodes of the remote
   * sessions it shared a thread or a contact with. */
  std::function<void (const std::string & session,
      const std::vector<std::pair<std::string, bool>> & threads,
      const std::set<std::string> & nodes)> ended;
  /* A callback reply from local `from` to `origin`, held by `node`: the
   * origin's node checks it and delivers it. */
  std::function<void (const std::string & node, const std::string & origin,
      const std::string & from, const std::string & body)> reply;
  /* A message by id from local `from` to `ids`, which this node does not
   * know: the cluster layer looks them up in the session directory (and
   * as tags carried on other nodes) and hands `body` to their nodes, then
   * calls remote_found () for each session found, remote_tag_carriers ()
   * for each tag found, and remote_unknown () for the rest. `tags`,
   * carried by sessions here, may have carriers on other nodes too.
   * `answered`: someone else got the message already; `already`: the
   * sessions that got it. */
  std::function<void (const std::string & from,
      const std::vector<std::string> & ids,
      const std::vector<std::string> & tags, const std::string & body,
      bool answered, std::shared_ptr<const Message> message,
      const std::vector<std::string> & already)> lookup;
  /* A local session carries `tag` now (`quiet`: it moved here with it;
   * nobody is to be sent anything): other nodes' held watches reach it. */
  std::function<void (const std::string & session, const std::string & tag,
      bool quiet)> tagged;
  /* A local session holds a watch on `tag` (`quiet` as for tagged). */
  std::function<void (const std::string & session, const std::string & tag,
      bool quiet)> watching;
  /* A local session carries and watches these no more. */
  std::function<void (const std::string & session,
      const std::set<std::string> & tags,
      const std::set<std::string> & watched)> unpresence;
  /* What a local session would need to resume elsewhere changed: its
   * outbox only (`meta` false), or its threads, tags, watches or
   * contacts too. */
  std::function<void (const std::string & session, bool meta)> changed;
};

/* Checks an auth token exactly as the upgrade does: its grants, or
 * nullopt with `why` (one line). */
using TokenVerifier = std::function<std::optional<Grants> (
    std::string_view token, std::string & why)>;

class Router
{
public:
  /* `secret` signs resume tokens; a server restarted with the same secret
   * accepts tokens it issued before. */
  Router (RouterLimits limits, std::string secret);
  ~Router ();
  Router (const Router &) = delete;
  Router & operator= (const Router &) = delete;

  /* How a renewal (socket:token) is verified; without one the server
   * takes no auth tokens, and a renewal changes nothing. */
  void set_token_verifier (TokenVerifier verify) { verify_ = std::move (verify); }

  /* The ICE servers every greeting carries, TURN credentials minted for
   * the session at each greeting (a resume gets fresh ones). */
  void set_ice (IceConfig ice) { ice_ = std::move (ice); }

  /* A connection opened. `resume_token` may be empty; `last_seq` is the last
   * sequence number the client saw (-1: unknown). `grants` are those of the
   * connection's auth token (null: everything is allowed); a resumed
   * session takes them, and leaves the threads they do not grant and drops
   * its tags and watches when they do not grant presence. */
  OpenResult open (std::string_view resume_token, std::int64_t last_seq,
      std::int64_t now_us, std::shared_ptr<const Grants> grants = nullptr);

  /* A text frame from `session`. */
  std::vector<Delivery> receive (const std::string & session,
      std::string_view text, std::int64_t now_us);

  /* A frame the transport refused before it was read whole (too large). */
  std::vector<Delivery> reject (const std::string & session, ErrorCode code,
      const std::string & message);

  /* A frame the transport read but will not pass on (over the rate limit):
   * the sender gets the error, with `ref_type` and `callback_response` when
   * the text parses, and nothing is relayed. */
  std::vector<Delivery> refuse_text (const std::string & session,
      std::string_view text, ErrorCode code, const std::string & message);

  /* The session ends now, as with socket:disconnect. */
  std::vector<Delivery> leave (const std::string & session);

  /* The session's connection is gone; it is kept for the grace period. */
  std::vector<Delivery> drop (const std::string & session, std::int64_t now_us);

  /* Expire sessions whose grace period has passed, and end those whose
   * auth token expired unrenewed; the ids of the latter that were online
   * go to `token_expired`, for their connections to be closed. */
  std::vector<Delivery> tick (std::int64_t now_us,
      std::vector<std::string> * token_expired = nullptr);

  /* End every session now (server shutdown). */
  std::vector<Delivery> close_all ();

  /* Cluster mode. What other nodes report comes in here; each call
   * returns the deliveries to this node's sessions. */
  void set_cluster_hooks (ClusterHooks hooks);
  bool clustered () const { return static_cast<bool>(hooks_.forward); }
  /* `body` (relay text from another node) for the local sessions `to`;
   * `from`, if not empty, is its sender, held by `node`. */
  std::vector<Delivery> remote_deliver (const std::vector<std::string> & to,
      const std::string & body, const std::string & from,
      const std::string & node);
  /* `session` (on `node`) joined `thread`: the local members named in
   * `members` (those that were in it before, in Redis's order) get
   * `body`. `again`: its node announces a membership again (after an
   * outage); nothing happens if it is a member here already. */
  std::vector<Delivery> remote_join (const std::string & thread,
      const std::string & session, const std::string & node,
      const std::string & body, const std::vector<std::string> & members,
      bool again = false);
  /* A thread:connect of local `session` to `thread` as relayed, with no
   * constraints (the router keeps none): for announcing it again. */
  std::string join_text (const std::string & thread,
      const std::string & session) const;
  /* `session`, held by `node`, was in `thread` before the local `joiner`
   * joined it: it becomes a member here, unannounced. */
  void remote_member (const std::string & thread, const std::string & joiner,
      const std::string & session, const std::string & node);
  /* `session` left `thread`: the local members named in `members` (those
   * still in it, in Redis's order) get thread:disconnect. */
  std::vector<Delivery> remote_leave (const std::string & thread,
      const std::string & session, const std::vector<std::string> & members);
  /* `session` ended on its node, as end() does here for the local
   * sessions that knew it. */
  std::vector<Delivery> remote_end (const std::string & session);
  /* Every session of `node` ended (the node is gone). */
  std::vector<Delivery> remote_node_gone (const std::string & node);
  /* A callback reply `body` from `from` (on `node`) to the local `origin`. */
  std::vector<Delivery> remote_reply (const std::string & origin,
      const std::string & from, const std::string & node,
      const std::string & body);
  /* A lookup found `session` on `node`: it becomes a contact of `from`. */
  void remote_found (const std::string & from, const std::string & session,
      const std::string & node);
  /* A lookup found none of `ids`: `from` gets unknown-recipient, answering
   * the message's callback unless `answered`. */
  std::vector<Delivery> remote_unknown (const std::string & from,
      const std::vector<std::string> & ids, const Message & message,
      bool answered);
  /* The state of local `session` (threads with members, contacts), for
   * another node to resume it from; false if it is not a local session. */
  bool export_session (const std::string & session, SessionState & out) const;
  /* Its outbox entries after `after`, and the outbox's size; `next_seq`
   * and `last_sent` as SessionState has them. */
  std::size_t box_since (const std::string & session, std::uint64_t after,
      std::vector<std::pair<std::uint64_t, std::shared_ptr<const std::string>>>
      & out, std::uint64_t & next_seq, std::uint64_t & last_sent) const;
  /* The session id a resume token names, "" if it does not verify. */
  std::string token_id (std::string_view token) const
  {
    return verify_token (token);
  }
  /* Local `session` resumes on `node`: its state goes to `out` and it
   * becomes a stand-in named with `node`, nobody told. Returns whether it
   * was online (its connection is to be closed); nullopt if it is not a
   * local session. */
  std::optional<bool> hand_over (const std::string & session,
      const std::string & node, SessionState & out);
  /* A session of another node comes here, away, with `state` (as
   * export_session () gave it); members and contacts named with node ""
   * are sessions of this node. open () with its token then resumes it.
   * false if a local session has its id already. */
  bool adopt (const SessionState & state, std::int64_t now_us);
  /* Carriers of `tag` on other nodes (id, node) for the message `m` that
   * local `from` sent to it: each gets it as route () would send it, but
   * for those in `skip` (they got it already). */
  std::vector<Delivery> remote_tag_carriers (const std::string & from,
      const std::string & tag,
      const std::vector<std::pair<std::string, std::string>> & carriers,
      const Message & m, const std::set<std::string> & skip);
  /* `carrier` (on `node`) took `tag`: the local `watchers` send it their
   * held watch on it. */
  std::vector<Delivery> remote_tagged (const std::string & tag,
      const std::string & carrier, const std::string & node,
      const std::vector<std::string> & watchers);
  /* The carriers on other nodes of `tag`, which local `watcher` watches:
   * they get its held watch. */
  std::vector<Delivery> remote_watch_carriers (const std::string & watcher,
      const std::string & tag,
      const std::vector<std::pair<std::string, std::string>> & carriers);
  /* `session`, a stand-in here, is now held by `node`. */
  void remote_moved (const std::string & session, const std::string & node);
  /* The nodes holding remote sessions known here. */
  std::vector<std::string> remote_nodes () const;
  std::size_t remote_count () const { return remote_sessions_; }
  /* Local sessions, and the local members of each thread as (thread,
   * session) pairs. */
  std::vector<std::string> local_sessions () const;
  std::vector<std::pair<std::string, std::string>> local_memberships () const;

  /* Introspection for metrics and tests. */
  std::size_t session_count () const { return sessions_.size () - remote_sessions_; }
  std::size_t online_count () const;
  std::size_t thread_count () const { return threads_.size (); }
  std::size_t tag_count () const { return tags_.size (); }
  std::size_t watch_count () const;
  bool has_session (const std::string & id) const;
  bool is_online (const std::string & id) const;
  std::vector<std::string> thread_members (const std::string & thread) const;
  std::size_t queued (const std::string & id) const;
  const RouterStats & stats () const { return stats_; }
  const RouterLimits & limits () const { return limits_; }

  std::string token_for (const std::string & id) const;

private:
  struct Session;
  struct Watch;
  struct Thread;
  struct Pending;
  class Out;

  Session *find (const std::string & id);
  Session *create (const std::string & id);
  std::string new_id ();
  std::string verify_token (std::string_view token) const;

  void handle (Session & s, const Message & m, std::int64_t now_us,
      Out & out);
  void handle_token (Session & s, const Message & m, std::int64_t now_us,
      Out & out);
  void set_deadline (Session & s, std::int64_t now_us);
  bool share_thread (const Session & a, const Session & b) const;
  bool granted (Session & s, const Message & m, Out & out);
  void apply_grants (Session & s, Out & out);
  void handle_thread_connect (Session & s, const Message & m, Out & out);
  void handle_thread_change (Session & s, const Message & m, Out & out);
  void handle_thread_disconnect (Session & s, const Message & m, Out & out);
  void handle_tag (Session & s, const Message & m, Out & out);
  void handle_watch (Session & s, const Message & m, Out & out);
  void handle_reply (Session & s, const Message & m, Out & out);
  void route (Session & s, const Message & m, Out & out);
  void send_to (Session & from, Session & to, const Message & m,
      const std::string * original_to, Out & out);
  void leave_thread (Session & s, const std::string & thread, Out & out,
      bool tell_cluster = true);
  void end (Session & s, Out & out);
  void drop_presence (Session & s);
  void refuse (Session & s, Out & out, ErrorCode code, const std::string & msg,
      const Message * m = nullptr, std::string_view grant = {});
  void remember_callback (Session & origin, const Message & m,
      const std::string & recipient, Out & out);
  void contact (Session & a, Session & b);
  bool deliver (Session & to, const std::string & body, Out & out,
      const Session * from = nullptr);
  void changed (const Session & s, bool meta = true);
  Session *remote (const std::string & id, const std::string & node);
  void forget_remote (Session & s);
  void drop_remote_members (const std::string & thread);

  RouterLimits limits_;
  std::string secret_;
  std::unordered_map<std::string, std::unique_ptr<Session>> sessions_;
  std::unordered_set<std::string> away_;   /* ids of sessions offline */
  std::unordered_map<std::string, std::unique_ptr<Thread>> threads_;
  std::unordered_map<std::string, std::set<std::string>> tags_;
  std::unordered_map<std::string, std::list<Watch>> watches_;   /* by tag */
  RouterStats stats_;
  TokenVerifier verify_;
  IceConfig ice_;
  /* Sessions by the monotonic time their auth token expires: the tick
   * looks only at those due. */
  std::set<std::pair<std::int64_t, std::string>> deadlines_;
  /* Cluster mode: stand-ins for sessions of other nodes, by node. */
  ClusterHooks hooks_;
  std::map<std::string, std::set<std::string>> remote_;
  std::size_t remote_sessions_ = 0;
  /* While set, nothing is handed to other nodes: what is being applied
   * came from one, and each node tells its own sessions. */
  bool local_only_ = false;
};

}  // namespace peerjs
