/* The core the three elements share: one session with peerjs-signalling
 * (identity, threads, members and their constraints) and the mesh of Peers
 * it keeps with the members that media may flow with. The element
 * forwards its properties as a Config and its request pads as Outgoing
 * streams; the session adds and removes the element's member pads and
 * posts its bus messages.
 *
 * Threads: start(), stop(), add_outgoing() and remove_outgoing() are called
 * by the element (application or state-change thread). The WebSocket has
 * a thread of its own (SignallingClient); everything else, the room state
 * and all negotiation, runs on the session's mesh thread, which may wait on
 * webrtcbin without keeping the WebSocket from answering pings.
 */
#pragma once

#include "files.h"
#include "media.h"
#include "messages.h"
#include "peer.h"
#include "signalling-client.h"

#include <atomic>
#include <map>
#include <set>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace peerjs {

struct Config
{
  std::vector<std::string> servers;     /* tried in this order, round */
  std::string tls_ca;
  std::string auth_token;               /* "": none */
  std::vector<std::string> threads;
  std::string constraints;              /* JSON object, or "" for automatic */
  bool receives = false;                /* a source element */
  std::string stun_server;
  std::string turn_server;
  std::vector<std::string> turn_servers;    /* turn-servers, with turn-server */
  std::vector<std::string> ice_addresses;   /* empty: automatic */
  GstWebRTCICETransportPolicy ice_transport_policy =
      GST_WEBRTC_ICE_TRANSPORT_POLICY_ALL;
  bool ice_tcp = false;                 /* ICE-TCP candidates too */
  guint latency_ms = 0;
  bool retransmission = true;           /* NACK and RTX, both ways */
  guint retransmission_wait_ms = 0;     /* a missing video packet, at least latency */
  bool fec = true;                      /* Opus FEC, ULPFEC in RED */
  guint stats_interval_ms = 0;          /* 0: no stats */
  CcSettings cc;
  std::vector<std::string> tags;
  std::vector<std::string> watches;
  guint reply_timeout_ms = 0;           /* 0: wait for ever */
  std::string download_dir;             /* "": files are not saved */
  /* How this member describes itself in thread:connect/change. */
  std::string display_name;             /* "": none */
  std::string pipeline;                 /* the element's factory name */
  bool records = false;                 /* mix=true: records the room */
  /* Receive only members whose id, name or an announced tag is one of
   * these (empty: every member). */
  std::vector<std::string> members;
  Accept accept = Accept::Signal;
  /* The server refused to let us join this thread (the token does not
   * grant it): the session no longer asks for it. Mesh thread. */
  std::function<void (const std::string &)> thread_refused;
};


class Session : public PeerHost, public FileHost
{
public:
  explicit Session (GstElement * element);
  ~Session () override;

  /* Check the config and connect; false (with an error posted) when the
   * config cannot work. */
  bool start (const Config & config);
  /* Leave, close every connection, remove member pads. */
  void stop ();
  /* Before the element's children leave PAUSED: end every file transfer
   * and unblock what their channels still push, so that the state change
   * does not wait on a member that stopped reading. */
  void stop_transfers ();

  /* A published stream for a sink pad; the pad to target. */
  GstPad *add_outgoing (Kind kind, Outgoing::Settings settings);
  void remove_outgoing (Kind kind);

  std::string id () const;
  /* The auth token for the next connection or reconnection, handed to
   * the server at once (socket:token) when the session runs; any thread. */
  void set_auth_token (const std::string & token);
  /* Chat into a thread we joined; false when not started or not joined.
   * Any thread. */
  bool send_message (const std::string & thread, const std::string & text);
  /* Mix every member into one video and one audio pad of the element
   * (NULL state only); false: a pad per member. */
  void set_mix (bool on, int width, int height);
  /* `sink` posted EOS: true if it is the clock sink of a published stream
   * (the message is ours to handle); `all` tells whether every published
   * stream has ended now. reset_ended() forgets them. */
  bool stream_ended (GstObject * sink, bool * all);
  void reset_ended ();
  /* New constraints for every thread joined, at once (false and a warning
   * when `text` is not a JSON object). */
  bool set_constraints (const std::string & text);

  /* Events, threads and presence; any thread. Each returns false (0) when
   * the arguments are wrong, with a warning on the bus. Before start()
   * only the thread list and presence are kept, for the next start. */

  /* An event of the application's `type` to `to` (session ids or tags)
   * and/or every member of `thread`. With `reply`, its one answer, the
   * server's refusal or a timeout comes back as peerjs-event-reply and
   * through `promise` (may be null). Returns the event's id, 0 when it
   * cannot be sent. */
  guint send_event (const std::string & type,
      const std::vector<std::string> & to, const std::string & thread,
      const std::string & data, bool reply, GstPromise * promise);
  /* Answer an event (or watch) that asked for a reply: `callback_id` as
   * posted with it. */
  bool reply_event (const std::string & to, const std::string & callback_id,
      const std::string & data);
  bool join_thread (const std::string & thread);
  bool leave_thread (const std::string & thread);
  /* Presence: tags last as long as the session; watches are held. A watch
   * returns its id, which its answer carries (peerjs-event-reply). */
  bool add_tags (const std::vector<std::string> & tags);
  guint add_watches (const std::vector<std::string> & tags);

  /* Files (files.h); false or "" with a warning on the bus. */
  std::string offer_file (const std::string & path,
      const std::vector<std::string> & to, const std::string & thread);
  /* A file pad's stream, stored at `path` (ours to delete): offered to
   * every thread joined, as `name`. Returns its id. */
  std::string offer_stream (const std::string & path, const std::string & name);
  bool request_file (const std::string & member, const std::string & id);
  bool cancel_file (const std::string & id);

  /* PeerHost */
  GstBin *bin () override { return GST_BIN (element_); }
  void send (JsonObject * msg) override;
  void invoke (std::function<void ()> f) override;
  bool wants_send (const std::string & member, Kind kind) override;
  bool wants_recv (const std::string & member, Kind kind) override;
  Outgoing *outgoing (Kind kind) override;
  bool receives () override { return config_.receives; }
  bool retransmits () override { return config_.retransmission; }
  guint latency_ms () override { return config_.latency_ms; }
  guint retransmission_wait_ms () override
  {
    return config_.retransmission_wait_ms;
  }
  bool fec () override { return config_.fec; }
  const CcSettings & congestion () override { return config_.cc; }
  bool media_ready () override;
  void configure (GstElement * webrtc, const std::string & member) override;
  /* Tell when `webrtc` ends gathering without a relay candidate: a peer
   * failure under ice-transport-policy=relay, else a warning. */
  void watch_relay (GstElement * webrtc, const std::string & member,
      const std::string & servers, bool relay_only);
  GstPad *add_output (GstPad * src, const std::string & member,
      Kind kind) override;
  void remove_output (GstPad * output, const std::string & member,
      Kind kind) override;
  void peer_failed (const std::string & member,
      const std::string & reason) override;
  void file_channel (const std::string & member,
      GstWebRTCDataChannel * channel) override;

  /* FileHost (send and invoke as above) */
  void invoke_later (guint ms, std::function<void ()> f) override;
  void post (GstStructure * s) override;
  void open_channel (const std::string & member, const std::string & label,
      std::function<void (GstWebRTCDataChannel *)> ready) override;
  void transfer_ended (const std::string & member) override;
  GstElement *element () override { return element_; }

private:
  struct Media
  {
    bool video = false;
    bool audio = false;
    bool has (Kind k) const { return k == Kind::Video ? video : audio; }
  };
  struct Thread
  {
    std::map<std::string, Media> members;
  };

  /* Signalling thread. */
  void on_connected (const std::string & id, bool first, bool same_id,
      bool resumed, const std::string & server);
  void on_message (JsonObject * msg);
  void on_lost (const std::string & reason, bool fatal, guint retry_ms,
      const std::string & server, const std::string & next);
  void on_refused (guint status, const std::string & reason,
      const std::string & server);
  void thread_refused (const std::string & thread);
  void join_all ();
  Media our_media () const;
  JsonObject *our_constraints () const;
  bool allowed (const std::string & member, Kind kind) const;
  /* `members` lets the member's media in (signalling thread). */
  bool chosen (const std::string & member) const;
  void learn_names (const std::string & member, JsonObject * msg);
  bool shares_thread (const std::string & member) const;
  Peer *ensure_peer (const std::string & member);
  void settle (const std::string & member);
  void close_peer (const std::string & member);
  void sync_all ();
  /* Our constraints may have changed: tell the threads (always when
   * `announce`, else only when they follow the pads) and renegotiate. */
  void constraints_changed (bool announce);
  static bool parse_constraints (const std::string & text, bool * fixed,
      Media * media, std::string * error);
  static Media media_of (JsonObject * constraints);
  void collect_stats ();
  /* Every LOSS_POLL_MS: the loss members report sizes the FEC sent to
   * them (fec.h), with do-fec. */
  void watch_loss ();
  void unwatch_loss ();
  void follow_loss ();
  /* Congestion control (congestion.cpp): the video encoder's bitrate
   * follows the members' estimates, reconsidered twice a second. */
  void adapt_bitrate ();
  void start_adapting ();
  void stop_adapting ();
  /* Presence not yet known to the server: all of it when `all` (a new or
   * forgotten session). */
  void send_presence (bool all);
  void on_event (JsonObject * msg, const std::string & type);
  /* False: not a reply we wait for, and worth handling as a message. */
  bool on_reply (JsonObject * msg);
  /* The end of event `id`'s wait for a reply: its peerjs-event-reply,
   * through the promise and on the bus. `data` is JSON; `error` is empty
   * when the reply came. */
  void finish_callback (guint id, const std::string & from,
      const std::string & data, const std::string & error,
      const std::string & text);
  bool warn_if (bool bad, const std::string & what);

  GstElement *element_;
  Config config_;
  std::unique_ptr<SignallingClient> client_;
  GMainContext *context_ = nullptr;     /* the mesh thread's */
  GMainLoop *loop_ = nullptr;
  std::thread thread_;

  mutable std::mutex lock_;             /* id_, auth_token_, outgoing_, joined_ */
  std::string id_;
  std::string auth_token_;
  std::vector<std::string> joined_;     /* threads, as the element sees them */
  std::vector<std::string> tags_, watches_;
  std::atomic<guint> next_event_id_ { 1 };
  std::unique_ptr<Outgoing> outgoing_[KIND_COUNT];
  bool ended_[KIND_COUNT] = {};

  /* Signalling thread. */
  std::map<std::string, Thread> threads_;
  /* What each member is known as besides its id: its name (the token's,
   * else its display_name) and the tags it announces. */
  std::map<std::string, std::vector<std::string>> known_as_;
  std::map<std::string, std::unique_ptr<Peer>> peers_;
  /* The no-relay warning (ice-transport-policy=all) was posted: once per
   * start, not per member. Mesh thread. */
  bool relay_warned_ = false;
  Media fixed_media_;                   /* from config_.constraints */
  bool fixed_ = false;
  bool warned_offline_ = false;
  GSource *stats_source_ = nullptr;
  GSource *loss_source_ = nullptr;
  FecLevel audio_fec_ { 1, MAX_AUDIO_FEC_PERCENT };   /* mesh thread */
  GSource *adapt_source_ = nullptr;
  std::unique_ptr<Mixer> mixer_;        /* set in NULL state only */
  std::unique_ptr<Files> files_;
  bool online_ = false;
  /* Presence the server has (cleared when it forgets the session). */
  std::set<std::string> tags_sent_;
  struct Watch
  {
    std::vector<std::string> tags;
    guint id;
    bool sent = false;
  };
  std::vector<Watch> watch_batches_;
  struct Pending
  {
    GstPromise *promise = nullptr;
    GSource *timeout = nullptr;
    bool event = true;                  /* false: a watch's */
  };
  std::map<guint, Pending> callbacks_;
};

}  // namespace peerjs
