#include "router.h"

#include <algorithm>
#include <utility>

namespace peerjs {

struct Router::Pending
{
  CallbackRef ref;
  std::set<std::string> recipients;   /* who may answer */
};

struct Router::Session
{
  std::string id;
  bool online = true;
  std::int64_t away_since = 0;
  std::uint64_t next_seq = 1;
  std::uint64_t last_sent = 0;        /* highest seq handed to a connection */
  /* The outbox: sent messages kept for replay, then what waits while away.
   * A vector, not a deque: an idle session's empty one allocates nothing,
   * and it holds a few dozen entries at most while online. */
  std::vector<std::pair<std::uint64_t, std::shared_ptr<const std::string>>> box;
  std::size_t box_bytes = 0;
  std::set<std::string> threads;
  std::shared_ptr<const Grants> grants;   /* null: no auth token */
  std::int64_t token_deadline = 0;        /* monotonic; 0: none */
  /* Cluster mode: the node holding a remote session's stand-in (a key of
   * Router::remote_); null for this node's own sessions. */
  const std::string *node = nullptr;

  /* What relayed messages carry as `from_name`. */
  const std::string *name () const
  {
    return grants && !grants->name.empty () ? &grants->name : nullptr;
  }

  /* What a session gathers once it talks, allocated on first use: an idle
   * session carries one pointer for all of it. */
  struct Extras
  {
    std::set<std::string> tags;
    std::set<std::string> watched;    /* tags this session watches */
    std::unordered_set<std::string> contacts;
    std::list<Pending> pending;       /* oldest first */
    std::unordered_map<std::string, std::list<Pending>::iterator> pending_by_key;
  };
  std::unique_ptr<Extras> extras;

  Extras & x ()
  {
    if (!extras)
      extras = std::make_unique<Extras> ();
    return *extras;
  }
  const Extras & view () const
  {
    static const Extras none;
    return extras ? *extras : none;
  }

  void pop_front ()
  {
    box_bytes -= box.front ().second->size ();
    box.erase (box.begin ());
  }
};

struct Router::Watch
{
  std::string watcher;
  std::shared_ptr<const Message> message;
};

/* Constraints are the clients' business: relayed, not stored. The router
 * reads them only to refuse media a token does not grant (publish). */
struct Router::Thread
{
  std::set<std::string> members;
  std::size_t local = 0;              /* members that are not remote */
};

/* Collects deliveries for one entry point. */
class Router::Out
{
public:
  std::vector<Delivery> items;
  void push (const std::string & session, std::shared_ptr<const std::string> t)
  {
    items.push_back (Delivery {session, std::move (t)});
  }
};

namespace {

std::string
callback_key_desc (const CallbackRef & ref)
{
  return ref.key.substr (2);
}

}  // namespace

Router::Router (RouterLimits limits, std::string secret)
  : limits_ (std::move (limits)), secret_ (std::move (secret))
{
}

Router::~Router () = default;

Router::Session *
Router::find (const std::string & id)
{
  auto it = sessions_.find (id);
  return it == sessions_.end () ? nullptr : it->second.get ();
}

Router::Session *
Router::create (const std::string & id)
{
  auto s = std::make_unique<Session> ();
  s->id = id;
  Session *raw = s.get ();
  sessions_.emplace (id, std::move (s));
  stats_.sessions_opened++;
  return raw;
}

std::string
Router::new_id ()
{
  /* 15 characters (36^15 ids) fit std::string's inline buffer: the id is
   * copied into every delivery without a heap allocation. */
  static const char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::string id;
  do {
    id.clear ();
    for (int i = 0; i < 15; i++)
      id += alphabet[g_random_int_range (0, 36)];
  } while (sessions_.count (id));
  return id;
}

std::string
Router::token_for (const std::string & id) const
{
  g_autofree char *mac = g_compute_hmac_for_data (G_CHECKSUM_SHA256,
      reinterpret_cast<const guchar *>(secret_.data ()), secret_.size (),
      reinterpret_cast<const guchar *>(id.data ()), id.size ());
  return id + "." + mac;
}

std::string
Router::verify_token (std::string_view token) const
{
  auto dot = token.rfind ('.');
  if (dot == std::string_view::npos || dot == 0)
    return {};
  std::string id (token.substr (0, dot));
  if (!valid_name (id, limits_.protocol.max_name_length))
    return {};
  std::string expected = token_for (id);
  if (expected.size () != token.size ())
    return {};
  unsigned char diff = 0;
  for (std::size_t i = 0; i < token.size (); i++)
    diff |= static_cast<unsigned char>(expected[i] ^ token[i]);
  return diff == 0 ? id : std::string ();
}

std::size_t
Router::online_count () const
{
  return sessions_.size () - away_.size () - remote_sessions_;
}

std::size_t
Router::watch_count () const
{
  std::size_t n = 0;
  for (const auto &kv : watches_)
    n += kv.second.size ();
  return n;
}

bool
Router::is_online (const std::string & id) const
{
  auto it = sessions_.find (id);
  return it != sessions_.end () && it->second->online;
}

std::vector<std::string>
Router::thread_members (const std::string & thread) const
{
  std::vector<std::string> out;
  auto it = threads_.find (thread);
  if (it != threads_.end ())
    out.assign (it->second->members.begin (), it->second->members.end ());
  return out;
}

std::size_t
Router::queued (const std::string & id) const
{
  auto it = sessions_.find (id);
  if (it == sessions_.end ())
    return 0;
  const Session & s = *it->second;
  std::size_t n = 0;
  for (const auto &e : s.box)
    n += e.first > s.last_sent ? 1 : 0;
  return n;
}

bool
Router::deliver (Session & to, const std::string & body, Out & out,
    const Session * from)
{
  if (to.node) {
    /* Its node numbers it and queues it; what it cannot take is its to
     * count (docs/scaling.md). */
    if (!local_only_ && hooks_.forward)
      hooks_.forward (*to.node, to.id, from ? from->id : std::string (), body);
    return true;
  }
  std::uint64_t seq = to.next_seq;
  auto text = std::make_shared<const std::string>(with_seq (seq, body));

  if (!to.online) {
    /* Away: what was already sent may go to make room; what was not, may not. */
    auto over = [&] () {
      return to.box.size () + 1 > limits_.away_messages
          || to.box_bytes + text->size () > limits_.away_bytes;
    };
    while (over () && !to.box.empty () && to.box.front ().first <= to.last_sent)
      to.pop_front ();
    if (over ())
      return false;
  }

  to.next_seq++;
  to.box.emplace_back (seq, text);
  to.box_bytes += text->size ();
  stats_.messages_out++;
  if (to.online) {
    out.push (to.id, text);
    to.last_sent = seq;
    while (to.box.size () > limits_.replay_messages
        || to.box_bytes > limits_.replay_bytes)
      to.pop_front ();
  }
  changed (to, false);
  return true;
}

void
Router::changed (const Session & s, bool meta)
{
  if (!s.node && hooks_.changed)
    hooks_.changed (s.id, meta);
}

void
Router::refuse (Session & s, Out & out, ErrorCode code, const std::string & msg,
    const Message * m, std::string_view grant)
{
  stats_.errors[error_code_name (code)]++;
  const CallbackRef *cb = (m && m->callback_id ()) ? &*m->callback_id () : nullptr;
  deliver (s, error_text (code, msg, cb, m ? m->type () : std::string (),
          m && m->thread () ? *m->thread () : std::string (), grant), out);
}

void
Router::contact (Session & a, Session & b)
{
  if (&a == &b)
    return;
  auto &ac = a.x ().contacts, &bc = b.x ().contacts;
  if (ac.size () < limits_.max_contacts && bc.size () < limits_.max_contacts) {
    if (ac.insert (b.id).second)
      changed (a);
    if (bc.insert (a.id).second)
      changed (b);
  }
}

void
Router::remember_callback (Session & origin, const Message & m,
    const std::string & recipient, Out & out)
{
  if (!m.callback_id ())
    return;
  const CallbackRef & ref = *m.callback_id ();
  Session::Extras & ox = origin.x ();
  auto it = ox.pending_by_key.find (ref.key);
  if (it == ox.pending_by_key.end ()) {
    if (ox.pending.size () >= limits_.max_pending_callbacks) {
      /* Forget the oldest, and say so: its one reply is this error. */
      Pending old = std::move (ox.pending.front ());
      ox.pending_by_key.erase (old.ref.key);
      ox.pending.pop_front ();
      stats_.errors[error_code_name (ErrorCode::CallbackExpired)]++;
      deliver (origin, error_text (ErrorCode::CallbackExpired,
              "callback " + callback_key_desc (old.ref) + " was dropped "
              "unanswered: more than " +
              std::to_string (limits_.max_pending_callbacks) +
              " callbacks are waiting", &old.ref), out);
    }
    ox.pending.push_back (Pending {ref, {}});
    it = ox.pending_by_key.emplace (ref.key,
        std::prev (ox.pending.end ())).first;
  }
  if (it->second->recipients.insert (recipient).second)
    changed (origin);
}

OpenResult
Router::open (std::string_view resume_token, std::int64_t last_seq,
    std::int64_t now_us, std::shared_ptr<const Grants> grants)
{
  OpenResult r;
  Out out;
  std::string id;
  bool bad_token = false;

  if (!resume_token.empty ()) {
    id = verify_token (resume_token);
    bad_token = id.empty ();
  }

  Session *s = id.empty () ? nullptr : find (id);
  if (s && s->node) {
    /* A session of another node that the cluster layer could not bring
     * here (adopt ()): it starts afresh with its id, and the sessions here
     * that knew it are told it ended. */
    local_only_ = true;
    end (*s, out);
    local_only_ = false;
    s = nullptr;
  }
  std::uint64_t missed = 0;
  std::vector<std::shared_ptr<const std::string>> replay;

  if (s) {
    r.resumed = true;
    r.replaced = s->online;
    s->online = true;
    away_.erase (s->id);
    stats_.sessions_resumed++;
    std::uint64_t newest = s->next_seq - 1;
    std::uint64_t seen = last_seq >= 0
        ? std::min<std::uint64_t>(static_cast<std::uint64_t>(last_seq), newest)
        : s->last_sent;
    std::uint64_t first_kept = s->box.empty () ? s->next_seq : s->box.front ().first;
    if (first_kept > seen + 1)
      missed = first_kept - (seen + 1);
    for (const auto &e : s->box)
      if (e.first > seen)
        replay.push_back (e.second);
    s->last_sent = newest;
  } else {
    if (session_count () >= limits_.max_sessions) {
      stats_.errors[error_code_name (ErrorCode::ServerFull)]++;
      r.refusal = error_text (ErrorCode::ServerFull, "the server has " +
          std::to_string (limits_.max_sessions) + " sessions, its limit");
      return r;
    }
    /* A valid token for a session we do not know: the server restarted or
     * the grace period passed. The id is the client's to keep. */
    s = create (id.empty () ? new_id () : id);
  }
  s->grants = std::move (grants);
  set_deadline (*s, now_us);

  Greeting g;
  g.id = s->id;
  g.token = token_for (s->id);
  g.resumed = r.resumed;
  g.missed = missed;
  g.grace_seconds = limits_.grace_us / 1e6;
  g.ping_interval_seconds = limits_.ping_interval_us / 1e6;
  g.max_message_size = limits_.protocol.max_message_size;
  if (const std::string *name = s->name ())
    g.name = *name;
  if (s->grants)
    g.expires = s->grants->expires;
  if (!ice_.empty ())
    g.ice_servers = ice_servers_json (ice_, s->id, ice_.clock ? ice_.clock ()
        : g_get_real_time () / G_USEC_PER_SEC);
  out.push (s->id, std::make_shared<const std::string>(greeting_text (g)));
  for (auto &t : replay)
    out.push (s->id, std::move (t));
  if (bad_token)
    refuse (*s, out, ErrorCode::BadToken,
        "the resume token did not verify; this is a new session");
  if (r.resumed && s->grants)
    apply_grants (*s, out);
  changed (*s);

  r.ok = true;
  r.session = s->id;
  r.deliveries = std::move (out.items);
  return r;
}

std::vector<Delivery>
Router::receive (const std::string & session, std::string_view text,
    std::int64_t now_us)
{
  Out out;
  Session *s = find (session);
  if (!s || !s->online)
    return {};
  stats_.messages_in++;

  ProtocolError err;
  auto m = Message::parse (text, limits_.protocol, &err);
  if (!m) {
    refuse (*s, out, err.code, err.message);
    return std::move (out.items);
  }
  if (m->from () && *m->from () != s->id) {
    refuse (*s, out, ErrorCode::SpoofedFrom, "'from' is set by the server; "
        "this session is " + s->id + ", not " + *m->from (), &*m);
    return std::move (out.items);
  }
  handle (*s, *m, now_us, out);
  return std::move (out.items);
}

std::vector<Delivery>
Router::reject (const std::string & session, ErrorCode code,
    const std::string & message)
{
  return refuse_text (session, {}, code, message);
}

std::vector<Delivery>
Router::refuse_text (const std::string & session, std::string_view text,
    ErrorCode code, const std::string & message)
{
  Out out;
  if (Session *s = find (session)) {
    stats_.messages_in++;
    auto m = Message::parse (text, limits_.protocol, nullptr);
    refuse (*s, out, code, message, m ? &*m : nullptr);
  }
  return std::move (out.items);
}

namespace {

bool
starts_with (const std::string & s, std::string_view prefix)
{
  return s.size () >= prefix.size ()
      && s.compare (0, prefix.size (), prefix) == 0;
}

/* Types in the namespaces the server defines; everything else is the
 * applications' and only routed. */
bool
server_type (const std::string & type)
{
  return type == "error" || starts_with (type, "socket:")
      || starts_with (type, "thread:") || starts_with (type, "presence:");
}

}  // namespace

/* A session that resumed with another token keeps only what it grants:
 * threads it may not join are left (their members are told), and tags and
 * watches go without presence. */
void
Router::apply_grants (Session & s, Out & out)
{
  const Grants & g = *s.grants;
  if (!g.any_thread) {
    for (const auto &name : std::set<std::string> (s.threads))
      if (!g.may_join (name))
        leave_thread (s, name, out);
  }
  if (!g.presence)
    drop_presence (s);
}

/* What the session's token does not grant is refused here, whatever the
 * message's route (callback replies included). */
bool
Router::granted (Session & s, const Message & m, Out & out)
{
  const Grants & g = *s.grants;
  if (g.any_thread && g.publish && g.files && g.presence)
    return true;
  const std::string & type = m.type ();
  bool thread_type = type == "thread:connect" || type == "thread:change";
  std::string why;
  const char *grant = nullptr;
  if (type == "file:offer" && !g.files) {
    why = "this session's token does not grant offering files (files)";
    grant = "files";
  } else if ((type == "presence:tag" || type == "presence:watch")
      && !g.presence) {
    why = "this session's token does not grant tags and watches (presence)";
    grant = "presence";
  } else if (type == "thread:connect" && !m.has_to () && m.thread ()
      && !g.may_join (*m.thread ())) {
    why = "this session's token does not grant thread '" + *m.thread () + "'";
    grant = "threads";
  } else if (thread_type && !g.publish && m.shares_media ()) {
    why = "this session's token does not grant sharing media (publish): "
        "its constraints must allow neither video nor audio";
    grant = "publish";
  }
  if (!grant)
    return true;
  refuse (s, out, ErrorCode::Forbidden, why, &m, grant);
  return false;
}

/* The token's `exp` (wall-clock seconds) as a deadline on the router's
 * monotonic clock. */
void
Router::set_deadline (Session & s, std::int64_t now_us)
{
  if (s.token_deadline)
    deadlines_.erase ({s.token_deadline, s.id});
  s.token_deadline = 0;
  if (!s.grants)
    return;
  std::int64_t left = s.grants->expires * G_USEC_PER_SEC - g_get_real_time ();
  /* 0 stands for none: a deadline is at least 1. */
  s.token_deadline = std::max<std::int64_t>(now_us + left, 1);
  deadlines_.emplace (s.token_deadline, s.id);
}

/* socket:token: a fresh auth token, verified as at the upgrade. One that
 * verifies takes the place of the old one as a resume would; one that
 * does not changes nothing. */
void
Router::handle_token (Session & s, const Message & m, std::int64_t now_us,
    Out & out)
{
  auto token = m.string_member ("token");
  if (!token) {
    refuse (s, out, ErrorCode::BadMessage, "socket:token needs 'token': the "
        "auth token (a JWT)", &m);
    return;
  }
  const CallbackRef *cb = m.callback_id () ? &*m.callback_id () : nullptr;
  if (!verify_) {
    /* As at the upgrade of a server without tokens: not looked at. */
    deliver (s, token_renewed_text (0, {}, cb), out);
    return;
  }
  std::string why;
  std::optional<Grants> g = verify_ (*token, why);
  if (!g) {
    refuse (s, out, ErrorCode::InvalidToken, "the auth token was not renewed: "
        + why, &m);
    return;
  }
  s.grants = std::make_shared<const Grants> (std::move (*g));
  set_deadline (s, now_us);
  deliver (s, token_renewed_text (s.grants->expires, s.grants->name, cb), out);
  apply_grants (s, out);
}

bool
Router::share_thread (const Session & a, const Session & b) const
{
  const Session & fewer = a.threads.size () <= b.threads.size () ? a : b;
  const Session & other = &fewer == &a ? b : a;
  for (const auto &t : fewer.threads)
    if (other.threads.count (t))
      return true;
  return false;
}

void
Router::handle (Session & s, const Message & m, std::int64_t now_us,
    Out & out)
{
  const std::string & type = m.type ();
  if (s.grants && !granted (s, m, out))
    return;
  if (!m.callback_response () && !server_type (type)) {
    route (s, m, out);
    return;
  }
  if (m.callback_response ()) {
    handle_reply (s, m, out);
  } else if (type == "thread:connect") {
    handle_thread_connect (s, m, out);
  } else if (type == "thread:change") {
    handle_thread_change (s, m, out);
  } else if (type == "thread:disconnect") {
    handle_thread_disconnect (s, m, out);
  } else if (type == "presence:tag") {
    handle_tag (s, m, out);
  } else if (type == "presence:watch") {
    handle_watch (s, m, out);
  } else if (type == "socket:disconnect") {
    end (s, out);
  } else if (type == "socket:token") {
    handle_token (s, m, now_us, out);
  } else {
    refuse (s, out, ErrorCode::UnknownType, "type '" + type + "' is in a "
        "namespace the server defines, and it defines no such type", &m);
  }
}

void
Router::handle_thread_connect (Session & s, const Message & m, Out & out)
{
  if (!m.thread ()) {
    refuse (s, out, ErrorCode::BadMessage, "thread:connect needs 'thread'", &m);
    return;
  }
  const std::string & name = *m.thread ();
  auto it = threads_.find (name);
  bool member = it != threads_.end () && it->second->members.count (s.id);

  if (m.has_to ()) {
    /* A member's answer to a joiner; joining happens by broadcast only, so
     * nobody enters a thread unannounced. */
    if (!member) {
      refuse (s, out, ErrorCode::NotMember, "join thread '" + name + "' with a "
          "thread:connect to the thread before answering in it", &m);
      return;
    }
    route (s, m, out);
    return;
  }

  if (!member) {
    if (s.threads.size () >= limits_.max_threads_per_session) {
      refuse (s, out, ErrorCode::Limit, "a session may be in at most " +
          std::to_string (limits_.max_threads_per_session) + " threads", &m);
      return;
    }
    if (it != threads_.end ()
        && it->second->members.size () >= limits_.max_members_per_thread) {
      refuse (s, out, ErrorCode::Limit, "thread '" + name + "' is full (" +
          std::to_string (limits_.max_members_per_thread) + " members)", &m);
      return;
    }
    if (it == threads_.end ())
      it = threads_.emplace (name, std::make_unique<Thread> ()).first;
  }
  if (it->second->members.insert (s.id).second)
    it->second->local++;
  if (s.threads.insert (name).second)
    changed (s);
  route (s, m, out);
  /* The members on other nodes hear of it through the cluster layer,
   * which also names them to this node. */
  if (hooks_.joined)
    hooks_.joined (name, s.id, m.relay_text (s.id, nullptr, s.name ()));
}

void
Router::handle_thread_change (Session & s, const Message & m, Out & out)
{
  if (!m.thread ()) {
    refuse (s, out, ErrorCode::BadMessage, "thread:change needs 'thread'", &m);
    return;
  }
  auto it = threads_.find (*m.thread ());
  if (it == threads_.end () || !it->second->members.count (s.id)) {
    refuse (s, out, ErrorCode::NotMember, "not in thread '" + *m.thread () +
        "'", &m);
    return;
  }
  route (s, m, out);
}

void
Router::handle_thread_disconnect (Session & s, const Message & m, Out & out)
{
  if (!m.thread ()) {
    refuse (s, out, ErrorCode::BadMessage, "thread:disconnect needs 'thread'",
        &m);
    return;
  }
  if (!s.threads.count (*m.thread ())) {
    refuse (s, out, ErrorCode::NotMember, "not in thread '" + *m.thread () +
        "'", &m);
    return;
  }
  leave_thread (s, *m.thread (), out);
}

void
Router::leave_thread (Session & s, const std::string & name, Out & out,
    bool tell_cluster)
{
  if (s.threads.erase (name))
    changed (s);
  auto it = threads_.find (name);
  if (it == threads_.end ())
    return;
  Thread &t = *it->second;
  if (t.members.erase (s.id) && !s.node)
    t.local--;
  /* Members on other nodes are told by their own node. */
  std::string body = thread_disconnect_text (name, s.id);
  for (const auto &id : t.members)
    if (Session *m = find (id); m && !m->node)
      deliver (*m, body, out);
  if (tell_cluster && !s.node && hooks_.left)
    hooks_.left (name, s.id, t.local == 0);
  if (t.members.empty ())
    threads_.erase (it);
  else if (t.local == 0)
    drop_remote_members (name);
}

/* No local member is left in `thread`: this node forgets it, and the
 * stand-ins it alone kept. */
void
Router::drop_remote_members (const std::string & thread)
{
  auto it = threads_.find (thread);
  if (it == threads_.end ())
    return;
  std::set<std::string> members = std::move (it->second->members);
  threads_.erase (it);
  for (const auto &id : members) {
    Session *r = find (id);
    if (!r || !r->node)
      continue;
    r->threads.erase (thread);
    if (r->threads.empty () && r->view ().contacts.empty ())
      forget_remote (*r);
  }
}

void
Router::handle_tag (Session & s, const Message & m, Out & out)
{
  std::vector<std::string> wanted;
  bool ok = m.data_strings (wanted);
  for (const auto &t : wanted)
    ok = ok && valid_name (t, limits_.protocol.max_name_length);
  if (!ok) {
    refuse (s, out, ErrorCode::BadMessage, "presence:tag needs 'data': a tag or "
        "an array of tags, each a string of 1 to " +
        std::to_string (limits_.protocol.max_name_length) + " bytes", &m);
    return;
  }

  std::vector<std::string> fresh;
  for (const auto &t : wanted)
    if (!s.view ().tags.count (t)
        && std::find (fresh.begin (), fresh.end (), t) == fresh.end ())
      fresh.push_back (t);
  if (s.view ().tags.size () + fresh.size () > limits_.max_tags_per_session) {
    refuse (s, out, ErrorCode::Limit, "a session may carry at most " +
        std::to_string (limits_.max_tags_per_session) + " tags", &m);
    return;
  }

  if (!fresh.empty ())
    changed (s);
  for (const auto &t : fresh) {
    s.x ().tags.insert (t);
    tags_[t].insert (s.id);
    /* Held watches of other nodes' sessions reach it through theirs. */
    if (hooks_.tagged)
      hooks_.tagged (s.id, t, false);
    auto w = watches_.find (t);
    if (w == watches_.end ())
      continue;
    for (const Watch & watch : w->second) {
      Session *watcher = find (watch.watcher);
      if (!watcher || watcher == &s)
        continue;
      send_to (*watcher, s, *watch.message, &t, out);
    }
  }
}

void
Router::handle_watch (Session & s, const Message & m, Out & out)
{
  if (!m.has_to ()) {
    refuse (s, out, ErrorCode::BadMessage, "presence:watch needs 'to': the tags "
        "to watch", &m);
    return;
  }
  std::size_t fresh = 0;
  for (const auto &e : m.to ())
    if (!find (e) && !s.view ().watched.count (e))
      fresh++;
  if (s.view ().watched.size () + fresh > limits_.max_watches_per_session) {
    refuse (s, out, ErrorCode::Limit, "a session may watch at most " +
        std::to_string (limits_.max_watches_per_session) + " tags", &m);
    return;
  }

  auto held = std::make_shared<const Message>(m);
  for (const auto &e : m.to ()) {
    if (Session *target = find (e)) {
      if (target != &s)
        send_to (s, *target, m, nullptr, out);
      continue;
    }
    /* A tag: hold the watch (the latest one per watcher and tag) so later
     * carriers get it too, and reach the present ones now. */
    auto &list = watches_[e];
    list.remove_if ([&] (const Watch & w) { return w.watcher == s.id; });
    list.push_back (Watch {s.id, held});
    s.x ().watched.insert (e);
    changed (s);
    /* The carriers on other nodes get it when the cluster layer has
     * found them (remote_watch_carriers ()). */
    if (hooks_.watching)
      hooks_.watching (s.id, e, false);
    auto carriers = tags_.find (e);
    if (carriers == tags_.end ())
      continue;
    for (const auto &id : carriers->second)
      if (Session *c = find (id); c && c != &s)
        send_to (s, *c, m, &e, out);
  }
}

void
Router::handle_reply (Session & s, const Message & m, Out & out)
{
  const CallbackRef & ref = *m.callback_response ();
  if (!m.has_to () || m.to ().size () != 1) {
    refuse (s, out, ErrorCode::BadMessage, "a callback reply needs 'to' naming "
        "the one session that asked", &m);
    return;
  }
  Session *origin = find (m.to ()[0]);
  if (!origin) {
    refuse (s, out, ErrorCode::UnknownRecipient, "no session '" + m.to ()[0] +
        "' to answer", &m);
    return;
  }
  if (origin->node) {
    /* The origin's node keeps its callbacks: it checks the reply there
     * and answers errors back. */
    if (hooks_.reply)
      hooks_.reply (*origin->node, origin->id, s.id,
          m.relay_text (s.id, nullptr, s.name ()));
    contact (s, *origin);
    remember_callback (s, m, origin->id, out);
    return;
  }
  Session::Extras & ox = origin->x ();
  auto it = ox.pending_by_key.find (ref.key);
  if (it == ox.pending_by_key.end ()
      || !it->second->recipients.count (s.id)) {
    refuse (s, out, ErrorCode::UnknownCallback, "session " + origin->id +
        " is not waiting for an answer from you to callback " +
        callback_key_desc (ref), &m);
    return;
  }
  /* The answer is spent only once it is on its way: a replier told
   * queue-full may try again. */
  if (!deliver (*origin, m.relay_text (s.id, nullptr, s.name ()), out, &s)) {
    refuse (s, out, ErrorCode::QueueFull, "session " + origin->id +
        " is away and its queue is full; try again later", &m);
    return;
  }
  ox.pending.erase (it->second);
  ox.pending_by_key.erase (it);
  changed (*origin);
  contact (s, *origin);
  remember_callback (s, m, origin->id, out);
}

void
Router::send_to (Session & from, Session & to, const Message & m,
    const std::string * original_to, Out & out)
{
  if (deliver (to, m.relay_text (from.id, original_to, from.name ()), out,
          &from)) {
    contact (from, to);
    remember_callback (from, m, to.id, out);
  }
}

void
Router::route (Session & s, const Message & m, Out & out)
{
  const std::string *thread = m.thread () ? &*m.thread () : nullptr;
  Thread *t = nullptr;
  if (thread) {
    auto it = threads_.find (*thread);
    if (it != threads_.end () && it->second->members.count (s.id))
      t = it->second.get ();
    if (!t) {
      refuse (s, out, ErrorCode::NotMember, "not in thread '" + *thread + "'",
          &m);
      return;
    }
  }

  /* Resolve recipients, each once, in the order given. */
  std::vector<std::pair<Session *, const std::string *>> recipients;
  /* Each recipient once; lists are short, a linear look is cheapest. */
  auto seen = [&] (Session * r) {
    for (const auto &e : recipients)
      if (e.first == r)
        return true;
    return false;
  };
  std::vector<std::string> unknown;
  std::vector<std::string> outside;   /* thread:* answers to non-members */
  std::vector<std::string> strangers; /* stream:*, file:* to no thread-mate */
  std::vector<std::string> lookups;   /* for the session directory */
  std::vector<std::string> tag_lookups;   /* tags carried here, maybe there */
  bool thread_type = starts_with (m.type (), "thread:");
  /* Negotiation and file transfers are between thread-mates only: a
   * session id alone opens no connection to its holder. */
  bool mates_only = starts_with (m.type (), "stream:")
      || starts_with (m.type (), "file:");

  if (m.has_to ()) {
    for (const auto &e : m.to ()) {
      if (Session *r = find (e)) {
        if (thread_type && !t->members.count (e))
          outside.push_back (e);
        else if (mates_only && r != &s && !share_thread (s, *r))
          strangers.push_back (e);
        else if (!seen (r))
          recipients.emplace_back (r, nullptr);
        continue;
      }
      auto carriers = tags_.find (e);
      if (carriers == tags_.end ()) {
        /* Cluster mode: maybe a session of another node. Messages that
         * need a membership or a shared thread have their stand-ins
         * already, if they may go at all. */
        if (hooks_.lookup && !thread_type && !mates_only) {
          if (std::find (lookups.begin (), lookups.end (), e) == lookups.end ())
            lookups.push_back (e);
        } else {
          unknown.push_back (e);
        }
        continue;
      }
      /* Cluster mode: carriers on other nodes too. */
      if (hooks_.lookup && !thread_type && std::find (tag_lookups.begin (),
              tag_lookups.end (), e) == tag_lookups.end ())
        tag_lookups.push_back (e);
      for (const auto &id : carriers->second) {
        if (id == s.id || (thread_type && !t->members.count (id)))
          continue;
        Session *r = find (id);
        if (mates_only && !share_thread (s, *r))
          continue;
        if (!seen (r))
          recipients.emplace_back (r, &e);
      }
    }
  } else if (t) {
    /* A join reaches the members on other nodes through the cluster
     * layer (ClusterHooks::joined), in Redis's order of joins. */
    bool joining = m.type () == "thread:connect";
    for (const auto &id : t->members)
      if (id != s.id) {
        Session *r = find (id);
        if (!(joining && r->node))
          recipients.emplace_back (r, nullptr);
      }
  } else {
    refuse (s, out, ErrorCode::BadMessage, "a message needs 'to' or 'thread'",
        &m);
    return;
  }

  /* Serialize once per distinct original_to. */
  std::string plain;
  std::map<std::string, std::string> tagged;
  std::vector<std::string> full;
  std::size_t delivered = 0;
  for (auto &[r, via] : recipients) {
    std::string *body;
    if (via) {
      auto it = tagged.find (*via);
      if (it == tagged.end ())
        it = tagged.emplace (*via, m.relay_text (s.id, via, s.name ())).first;
      body = &it->second;
    } else {
      if (plain.empty ())
        plain = m.relay_text (s.id, nullptr, s.name ());
      body = &plain;
    }
    if (deliver (*r, *body, out, &s)) {
      delivered++;
      contact (s, *r);
      remember_callback (s, m, r->id, out);
    } else {
      full.push_back (r->id);
    }
  }

  auto join = [] (const std::vector<std::string> & v) {
    std::string s;
    for (const auto &e : v)
      s += (s.empty () ? "'" : ", '") + e + "'";
    return s;
  };
  if (!lookups.empty () || !tag_lookups.empty ()) {
    /* Their answers are awaited as if they had it; remote_unknown ()
     * forgets those that do not exist. */
    for (const auto &e : lookups)
      remember_callback (s, m, e, out);
    std::vector<std::string> already;
    for (const auto &e : recipients)
      already.push_back (e.first->id);
    hooks_.lookup (s.id, lookups, tag_lookups,
        m.relay_text (s.id, nullptr, s.name ()), delivered > 0,
        std::make_shared<const Message> (m), already);
  }
  /* A callback that reached nobody is answered by the error; one that
   * reached someone stays theirs to answer (one that went to be looked
   * up is answered by remote_unknown () if need be). */
  const Message *cb = delivered == 0 && lookups.empty () ? &m : nullptr;
  if (!unknown.empty ())
    refuse (s, out, ErrorCode::UnknownRecipient, "no session or tag " +
        join (unknown), cb);
  if (!outside.empty ())
    refuse (s, out, ErrorCode::NotMember, join (outside) + " not in thread '" +
        *thread + "'", cb);
  if (!strangers.empty ())
    refuse (s, out, ErrorCode::NoSharedThread, join (strangers) + " shares no "
        "thread with you; " + m.type () + " goes only between members of a "
        "thread", cb);
  if (!full.empty ())
    refuse (s, out, ErrorCode::QueueFull, join (full) + " away and the queue "
        "is full; not delivered there", cb);
}

void
Router::end (Session & s, Out & out)
{
  std::string id = s.id;
  bool remote = s.node != nullptr;
  /* What other nodes must hear of: they tell their own sessions. */
  std::vector<std::pair<std::string, bool>> threads;
  std::set<std::string> nodes;
  if (!remote && hooks_.ended) {
    for (const auto &name : s.threads) {
      auto it = threads_.find (name);
      if (it == threads_.end ())
        continue;
      threads.emplace_back (name, it->second->local == 1);
      for (const auto &m : it->second->members)
        if (Session *r = find (m); r && r->node)
          nodes.insert (*r->node);
    }
    for (const auto &c : s.view ().contacts)
      if (Session *r = find (c); r && r->node)
        nodes.insert (*r->node);
  }
  for (const auto &name : std::set<std::string> (s.threads))
    leave_thread (s, name, out, false);
  drop_presence (s);
  std::string gone = socket_disconnect_text (id);
  for (const auto &c : s.view ().contacts) {
    Session *other = find (c);
    if (!other)
      continue;
    other->x ().contacts.erase (id);
    if (!other->node)
      deliver (*other, gone, out);
    else if (other->threads.empty () && other->view ().contacts.empty ())
      forget_remote (*other);
  }
  if (remote) {
    forget_remote (s);
    return;
  }
  if (s.token_deadline)
    deadlines_.erase ({s.token_deadline, id});
  away_.erase (id);
  sessions_.erase (id);
  if (hooks_.ended)
    hooks_.ended (id, threads, nodes);
}

/* Frees the session's tags and held watches. */
void
Router::drop_presence (Session & s)
{
  if (!s.extras)
    return;
  for (const auto &t : s.extras->tags) {
    auto it = tags_.find (t);
    if (it == tags_.end ())
      continue;
    it->second.erase (s.id);
    if (it->second.empty ())
      tags_.erase (it);
  }
  for (const auto &t : s.extras->watched) {
    auto it = watches_.find (t);
    if (it == watches_.end ())
      continue;
    it->second.remove_if ([&] (const Watch & w) { return w.watcher == s.id; });
    if (it->second.empty ())
      watches_.erase (it);
  }
  if (!s.extras->tags.empty () || !s.extras->watched.empty ()) {
    changed (s);
    if (!s.node && hooks_.unpresence)
      hooks_.unpresence (s.id, s.extras->tags, s.extras->watched);
  }
  s.extras->tags.clear ();
  s.extras->watched.clear ();
}

std::vector<Delivery>
Router::leave (const std::string & session)
{
  Out out;
  if (Session *s = find (session))
    end (*s, out);
  return std::move (out.items);
}

std::vector<Delivery>
Router::drop (const std::string & session, std::int64_t now_us)
{
  if (Session *s = find (session)) {
    s->online = false;
    s->away_since = now_us;
    away_.insert (s->id);
    changed (*s, false);
  }
  return {};
}

std::vector<Delivery>
Router::tick (std::int64_t now_us, std::vector<std::string> * token_expired)
{
  Out out;
  while (!deadlines_.empty () && deadlines_.begin ()->first <= now_us) {
    Session *s = find (deadlines_.begin ()->second);
    deadlines_.erase (deadlines_.begin ());
    if (!s)
      continue;
    s->token_deadline = 0;
    stats_.tokens_expired++;
    if (s->online && token_expired)
      token_expired->push_back (s->id);
    end (*s, out);
  }
  std::vector<std::string> expired;
  /* Only sessions away can expire: idle ones online cost nothing here. */
  for (const auto &id : away_) {
    const Session *s = sessions_.at (id).get ();
    if (now_us - s->away_since >= limits_.grace_us)
      expired.push_back (id);
  }
  for (const auto &id : expired) {
    /* An earlier end() in this loop cannot remove another session. */
    if (Session *s = find (id)) {
      stats_.sessions_expired++;
      end (*s, out);
    }
  }
  return std::move (out.items);
}

bool
Router::has_session (const std::string & id) const
{
  auto it = sessions_.find (id);
  return it != sessions_.end () && !it->second->node;
}

void
Router::set_cluster_hooks (ClusterHooks hooks)
{
  hooks_ = std::move (hooks);
}

/* The stand-in for `id` of `node`, made if need be; null if `id` is a
 * session of this node. A stand-in named with another node moves to
 * `node`: the session started afresh there (its old node is gone). */
Router::Session *
Router::remote (const std::string & id, const std::string & node)
{
  if (Session *s = find (id)) {
    if (s->node && *s->node != node) {
      auto old = remote_.find (*s->node);
      old->second.erase (id);
      if (old->second.empty ())
        remote_.erase (old);
      auto n = remote_.emplace (node, std::set<std::string> ()).first;
      n->second.insert (id);
      s->node = &n->first;
    }
    return s->node ? s : nullptr;
  }
  auto n = remote_.emplace (node, std::set<std::string> ()).first;
  n->second.insert (id);
  auto s = std::make_unique<Session> ();
  s->id = id;
  s->online = false;
  s->node = &n->first;
  Session *raw = s.get ();
  sessions_.emplace (id, std::move (s));
  remote_sessions_++;
  return raw;
}

void
Router::forget_remote (Session & s)
{
  std::string id = s.id;
  auto n = remote_.find (*s.node);
  sessions_.erase (id);
  remote_sessions_--;
  if (n != remote_.end ()) {
    n->second.erase (id);
    if (n->second.empty ())
      remote_.erase (n);
  }
}

std::vector<Delivery>
Router::remote_deliver (const std::vector<std::string> & to,
    const std::string & body, const std::string & from,
    const std::string & node)
{
  Out out;
  Session *f = from.empty () ? nullptr : remote (from, node);
  std::vector<std::string> gone, full;
  for (const auto &id : to) {
    Session *r = find (id);
    if (!r || r->node) {
      gone.push_back (id);
      continue;
    }
    if (!deliver (*r, body, out, f)) {
      full.push_back (id);
      continue;
    }
    if (f)
      contact (*f, *r);
  }
  if (f && (!gone.empty () || !full.empty ())) {
    /* What only this node can tell goes back to the sender, as one node
     * would say it; without callback_response, since this node cannot
     * tell whether another recipient got the message. A member that ended
     * meanwhile is no error for a thread message, as on one node. */
    auto m = Message::parse (body, limits_.protocol, nullptr);
    std::string type = m ? m->type () : std::string ();
    std::string thread = m && m->thread () ? *m->thread () : std::string ();
    auto join = [] (const std::vector<std::string> & v) {
      std::string s;
      for (const auto &e : v)
        s += (s.empty () ? "'" : ", '") + e + "'";
      return s;
    };
    if (!gone.empty () && thread.empty ()) {
      stats_.errors[error_code_name (ErrorCode::UnknownRecipient)]++;
      deliver (*f, error_text (ErrorCode::UnknownRecipient, "no session or "
              "tag " + join (gone), nullptr, type), out);
    }
    if (!full.empty ()) {
      stats_.errors[error_code_name (ErrorCode::QueueFull)]++;
      deliver (*f, error_text (ErrorCode::QueueFull, join (full) + " away "
              "and the queue is full; not delivered there", nullptr, type,
              thread), out);
    }
  }
  if (f && f->threads.empty () && f->view ().contacts.empty ())
    forget_remote (*f);
  return std::move (out.items);
}

std::vector<Delivery>
Router::remote_join (const std::string & thread, const std::string & session,
    const std::string & node, const std::string & body,
    const std::vector<std::string> & members, bool again)
{
  Out out;
  auto it = threads_.find (thread);
  if (it == threads_.end () || it->second->local == 0)
    return {};
  if (again && it->second->members.count (session)) {
    /* Known here as a member still: its mates never heard it leave. */
    if (Session *p = find (session); p && p->node)
      return {};
  }
  Session *p = remote (session, node);
  if (!p)
    return {};
  Thread &t = *it->second;
  t.members.insert (session);
  p->threads.insert (thread);
  /* Only those that were members before it: one that joined here since
   * was told of this member by the answer to its own join. */
  for (const auto &id : members)
    if (Session *m = find (id); m && !m->node && t.members.count (id)) {
      deliver (*m, body, out, p);
      contact (*p, *m);
    }
  return std::move (out.items);
}

std::string
Router::join_text (const std::string & thread, const std::string & session) const
{
  auto it = sessions_.find (session);
  const std::string *name = it != sessions_.end () ? it->second->name ()
      : nullptr;
  return thread_connect_text (thread, session, name ? *name : std::string ());
}

void
Router::remote_member (const std::string & thread, const std::string & joiner,
    const std::string & session, const std::string & node)
{
  auto it = threads_.find (thread);
  if (it == threads_.end () || !it->second->members.count (joiner))
    return;
  Session *j = find (joiner);
  Session *p = remote (session, node);
  if (!j || j->node || !p)
    return;
  it->second->members.insert (session);
  p->threads.insert (thread);
  contact (*j, *p);
}

std::vector<Delivery>
Router::remote_leave (const std::string & thread, const std::string & session,
    const std::vector<std::string> & members)
{
  Out out;
  Session *p = find (session);
  if (!p || !p->node || !p->threads.count (thread))
    return {};
  p->threads.erase (thread);
  auto it = threads_.find (thread);
  if (it != threads_.end ()) {
    Thread &t = *it->second;
    t.members.erase (session);
    std::string body = thread_disconnect_text (thread, session);
    for (const auto &id : members)
      if (Session *m = find (id); m && !m->node && t.members.count (id))
        deliver (*m, body, out);
  }
  if (p->threads.empty () && p->view ().contacts.empty ())
    forget_remote (*p);
  return std::move (out.items);
}

std::vector<Delivery>
Router::remote_end (const std::string & session)
{
  Out out;
  Session *p = find (session);
  if (p && p->node)
    end (*p, out);
  return std::move (out.items);
}

std::vector<Delivery>
Router::remote_node_gone (const std::string & node)
{
  Out out;
  auto n = remote_.find (node);
  if (n == remote_.end ())
    return {};
  std::set<std::string> ids = n->second;
  for (const auto &id : ids)
    if (Session *p = find (id); p && p->node)
      end (*p, out);
  return std::move (out.items);
}

std::vector<Delivery>
Router::remote_reply (const std::string & origin, const std::string & from,
    const std::string & node, const std::string & body)
{
  Out out;
  auto m = Message::parse (body, limits_.protocol, nullptr);
  Session *f = remote (from, node);
  if (!m || !m->callback_response () || !f)
    return {};
  const CallbackRef & ref = *m->callback_response ();
  Session *o = find (origin);
  if (!o || o->node) {
    refuse (*f, out, ErrorCode::UnknownRecipient, "no session '" + origin +
        "' to answer", &*m);
  } else {
    Session::Extras & ox = o->x ();
    auto it = ox.pending_by_key.find (ref.key);
    if (it == ox.pending_by_key.end () || !it->second->recipients.count (from)) {
      refuse (*f, out, ErrorCode::UnknownCallback, "session " + origin +
          " is not waiting for an answer from you to callback " +
          callback_key_desc (ref), &*m);
    } else if (!deliver (*o, body, out, f)) {
      refuse (*f, out, ErrorCode::QueueFull, "session " + origin +
          " is away and its queue is full; try again later", &*m);
    } else {
      ox.pending.erase (it->second);
      ox.pending_by_key.erase (it);
      changed (*o);
      contact (*f, *o);
    }
  }
  if (f->threads.empty () && f->view ().contacts.empty ())
    forget_remote (*f);
  return std::move (out.items);
}

void
Router::remote_found (const std::string & from, const std::string & session,
    const std::string & node)
{
  Session *f = find (from);
  if (!f || f->node)
    return;
  if (Session *p = remote (session, node)) {
    contact (*f, *p);
    if (p->threads.empty () && p->view ().contacts.empty ())
      forget_remote (*p);
  }
}

std::vector<Delivery>
Router::remote_unknown (const std::string & from,
    const std::vector<std::string> & ids, const Message & m, bool answered)
{
  Out out;
  Session *s = find (from);
  if (!s || s->node || ids.empty ())
    return {};
  if (m.callback_id () && s->extras) {
    auto it = s->extras->pending_by_key.find (m.callback_id ()->key);
    if (it != s->extras->pending_by_key.end ()) {
      for (const auto &id : ids)
        it->second->recipients.erase (id);
      changed (*s);
      if (it->second->recipients.empty ()) {
        s->extras->pending.erase (it->second);
        s->extras->pending_by_key.erase (it);
      }
    }
  }
  std::string list;
  for (const auto &e : ids)
    list += (list.empty () ? "'" : ", '") + e + "'";
  refuse (*s, out, ErrorCode::UnknownRecipient, "no session or tag " + list,
      answered ? nullptr : &m);
  return std::move (out.items);
}

bool
Router::export_session (const std::string & session, SessionState & out) const
{
  auto it = sessions_.find (session);
  if (it == sessions_.end () || it->second->node)
    return false;
  const Session & s = *it->second;
  auto node_of = [&] (const std::string & id) {
    auto o = sessions_.find (id);
    return o != sessions_.end () && o->second->node ? *o->second->node
        : std::string ();
  };
  out = SessionState ();
  out.id = s.id;
  out.next_seq = s.next_seq;
  out.last_sent = s.last_sent;
  out.box = s.box;
  const Session::Extras & x = s.view ();
  out.tags.assign (x.tags.begin (), x.tags.end ());
  for (const auto &tag : x.watched) {
    auto w = watches_.find (tag);
    if (w == watches_.end ())
      continue;
    for (const Watch & watch : w->second)
      if (watch.watcher == s.id)
        out.watches.emplace_back (tag, watch.message->relay_text (s.id));
  }
  for (const auto &c : x.contacts)
    out.contacts.emplace_back (c, node_of (c));
  for (const auto &p : x.pending)
    out.pending.push_back (SessionState::Callback {p.ref.key, p.ref.json,
          std::vector<std::string> (p.recipients.begin (),
              p.recipients.end ())});
  for (const auto &name : s.threads) {
    std::vector<std::pair<std::string, std::string>> members;
    if (auto t = threads_.find (name); t != threads_.end ())
      for (const auto &m : t->second->members)
        if (m != s.id)
          members.emplace_back (m, node_of (m));
    out.threads.emplace_back (name, std::move (members));
  }
  return true;
}

std::size_t
Router::box_since (const std::string & session, std::uint64_t after,
    std::vector<std::pair<std::uint64_t, std::shared_ptr<const std::string>>>
    & out, std::uint64_t & next_seq, std::uint64_t & last_sent) const
{
  auto it = sessions_.find (session);
  if (it == sessions_.end () || it->second->node)
    return 0;
  next_seq = it->second->next_seq;
  last_sent = it->second->last_sent;
  for (const auto &e : it->second->box)
    if (e.first > after)
      out.push_back (e);
  return it->second->box.size ();
}

std::optional<bool>
Router::hand_over (const std::string & session, const std::string & node,
    SessionState & out)
{
  Session *s = find (session);
  if (!s || s->node || !export_session (session, out))
    return std::nullopt;
  bool online = s->online;
  /* It stays in its threads and contacts here, as a stand-in: the
   * sessions here see no leave and no join. */
  drop_presence (*s);
  if (s->extras) {
    s->extras->pending.clear ();
    s->extras->pending_by_key.clear ();
  }
  if (s->token_deadline)
    deadlines_.erase ({s->token_deadline, s->id});
  s->token_deadline = 0;
  away_.erase (s->id);
  s->online = false;
  s->box.clear ();
  s->box_bytes = 0;
  s->grants.reset ();
  auto n = remote_.emplace (node, std::set<std::string> ()).first;
  n->second.insert (s->id);
  s->node = &n->first;
  remote_sessions_++;
  std::vector<std::string> emptied;
  for (const auto &name : s->threads)
    if (auto t = threads_.find (name); t != threads_.end ()
        && --t->second->local == 0)
      emptied.push_back (name);
  /* Threads with no local member left are forgotten here, with the
   * stand-ins only they kept (this one too, perhaps). */
  std::string id = s->id;
  for (const auto &name : emptied)
    drop_remote_members (name);
  if (Session *r = find (id); r && r->node && r->threads.empty ()
      && r->view ().contacts.empty ())
    forget_remote (*r);
  return online;
}

bool
Router::adopt (const SessionState & st, std::int64_t now_us)
{
  Session *s = find (st.id);
  if (s && !s->node)
    return false;
  if (s) {
    /* A stand-in here becomes the session itself. */
    auto n = remote_.find (*s->node);
    if (n != remote_.end ()) {
      n->second.erase (s->id);
      if (n->second.empty ())
        remote_.erase (n);
    }
    remote_sessions_--;
    s->node = nullptr;
    for (const auto &name : s->threads)
      if (auto t = threads_.find (name); t != threads_.end ())
        t->second->local++;
  } else {
    auto fresh = std::make_unique<Session> ();
    fresh->id = st.id;
    s = fresh.get ();
    sessions_.emplace (st.id, std::move (fresh));
  }
  s->online = false;
  s->away_since = now_us;
  away_.insert (s->id);
  s->next_seq = st.next_seq;
  s->last_sent = st.last_sent;
  s->box = st.box;
  s->box_bytes = 0;
  for (const auto &e : s->box)
    s->box_bytes += e.second->size ();
  /* `node` "" names a session of this node. */
  auto other = [&] (const std::string & id, const std::string & node)
      -> Session * {
    if (id == s->id)
      return nullptr;
    if (node.empty ()) {
      Session *l = find (id);
      return l && !l->node ? l : nullptr;
    }
    return remote (id, node);
  };
  for (const auto &[name, members] : st.threads) {
    auto it = threads_.find (name);
    if (it == threads_.end ())
      it = threads_.emplace (name, std::make_unique<Thread> ()).first;
    Thread &t = *it->second;
    if (t.members.insert (s->id).second)
      t.local++;
    s->threads.insert (name);
    for (const auto &[id, node] : members) {
      Session *m = other (id, node);
      if (!m || (!m->node && !t.members.count (id)))
        continue;   /* a local member that has left since */
      t.members.insert (id);
      m->threads.insert (name);
    }
  }
  for (const auto &[id, node] : st.contacts)
    if (Session *c = other (id, node))
      contact (*s, *c);
  /* The callbacks it waits for: answers reach it here. */
  for (const auto &p : st.pending) {
    Session::Extras & x = s->x ();
    if (x.pending_by_key.count (p.key))
      continue;
    x.pending.push_back (Pending {CallbackRef {p.key, p.json},
          std::set<std::string> (p.recipients.begin (), p.recipients.end ())});
    x.pending_by_key.emplace (p.key, std::prev (x.pending.end ()));
  }
  /* Carried and watched here now; nobody is sent anything again. */
  for (const auto &tag : st.tags) {
    s->x ().tags.insert (tag);
    tags_[tag].insert (s->id);
    if (hooks_.tagged)
      hooks_.tagged (s->id, tag, true);
  }
  for (const auto &[tag, text] : st.watches) {
    auto m = Message::parse (text, limits_.protocol, nullptr);
    if (!m)
      continue;
    watches_[tag].push_back (Watch {s->id,
          std::make_shared<const Message> (std::move (*m))});
    s->x ().watched.insert (tag);
    if (hooks_.watching)
      hooks_.watching (s->id, tag, true);
  }
  changed (*s);
  return true;
}

std::vector<Delivery>
Router::remote_tag_carriers (const std::string & from, const std::string & tag,
    const std::vector<std::pair<std::string, std::string>> & carriers,
    const Message & m, const std::set<std::string> & skip)
{
  Out out;
  Session *s = find (from);
  if (!s || s->node)
    return {};
  bool mates_only = starts_with (m.type (), "stream:")
      || starts_with (m.type (), "file:");
  for (const auto &[id, node] : carriers) {
    if (id == from || skip.count (id))
      continue;
    Session *p = remote (id, node);
    if (!p)
      continue;   /* a session of this node: it had it from route () */
    if (!mates_only || share_thread (*s, *p))
      send_to (*s, *p, m, &tag, out);
    if (p->threads.empty () && p->view ().contacts.empty ())
      forget_remote (*p);
  }
  return std::move (out.items);
}

std::vector<Delivery>
Router::remote_tagged (const std::string & tag, const std::string & carrier,
    const std::string & node, const std::vector<std::string> & watchers)
{
  Out out;
  auto w = watches_.find (tag);
  if (w == watches_.end ())
    return {};
  Session *p = remote (carrier, node);
  if (!p)
    return {};
  for (const Watch & watch : std::list<Watch> (w->second)) {
    Session *s = find (watch.watcher);
    if (!s || s->node || std::find (watchers.begin (), watchers.end (),
            watch.watcher) == watchers.end ())
      continue;
    send_to (*s, *p, *watch.message, &tag, out);
  }
  if (p->threads.empty () && p->view ().contacts.empty ())
    forget_remote (*p);
  return std::move (out.items);
}

std::vector<Delivery>
Router::remote_watch_carriers (const std::string & watcher,
    const std::string & tag,
    const std::vector<std::pair<std::string, std::string>> & carriers)
{
  Out out;
  Session *s = find (watcher);
  auto w = watches_.find (tag);
  if (!s || s->node || w == watches_.end ())
    return {};
  std::shared_ptr<const Message> held;
  for (const Watch & watch : w->second)
    if (watch.watcher == watcher)
      held = watch.message;
  if (!held)
    return {};
  for (const auto &[id, node] : carriers) {
    Session *p = remote (id, node);
    if (!p)
      continue;
    send_to (*s, *p, *held, &tag, out);
    if (p->threads.empty () && p->view ().contacts.empty ())
      forget_remote (*p);
  }
  return std::move (out.items);
}

void
Router::remote_moved (const std::string & session, const std::string & node)
{
  Session *s = find (session);
  if (s && s->node && *s->node != node)
    remote (session, node);
}

std::vector<std::string>
Router::remote_nodes () const
{
  std::vector<std::string> out;
  for (const auto &kv : remote_)
    out.push_back (kv.first);
  return out;
}

std::vector<std::string>
Router::local_sessions () const
{
  std::vector<std::string> out;
  for (const auto &kv : sessions_)
    if (!kv.second->node)
      out.push_back (kv.first);
  return out;
}

std::vector<std::pair<std::string, std::string>>
Router::local_memberships () const
{
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto &[name, t] : threads_)
    for (const auto &id : t->members)
      if (auto it = sessions_.find (id); it != sessions_.end ()
          && !it->second->node)
        out.emplace_back (name, id);
  return out;
}

std::vector<Delivery>
Router::close_all ()
{
  Out out;
  std::vector<std::string> ids;
  for (const auto &kv : sessions_)
    ids.push_back (kv.first);
  for (const auto &id : ids)
    if (Session *s = find (id))
      end (*s, out);
  return std::move (out.items);
}

}  // namespace peerjs
