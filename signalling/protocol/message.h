/* peerjs wire protocol: the message model and its JSON codec.
 *
 * One message is one JSON object in one WebSocket text frame. This module
 * checks such frames and builds the ones the server sends; it does no I/O
 * and keeps no state, so the server and the GStreamer elements share it.
 * docs/protocol.md is the contract this code implements.
 *
 * The server relays what it does not interpret, so a message is kept as its
 * text plus the place of each top-level member: one strict pass validates
 * the frame (RFC 8259, bounded nesting) and finds the envelope fields, and a
 * relayed message is the client's members spliced behind a new `from`. No
 * document tree is built for a message that is only passed on.
 */
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace peerjs {

/* What a single frame may hold. */
struct ProtocolLimits
{
  std::size_t max_message_size = 64 * 1024;   /* bytes of one JSON text */
  std::size_t max_name_length = 128;          /* ids, tags, thread names */
  std::size_t max_type_length = 64;
  std::size_t max_to_entries = 64;
  std::size_t max_callback_id_length = 64;    /* string callback ids */
  unsigned max_depth = 32;                     /* JSON nesting */
};

/* Error codes carried by {type:"error", code}. Stable: clients match on them. */
enum class ErrorCode
{
  BadJson,            /* not a JSON object, or too deeply nested */
  TooLarge,           /* frame or message over max_message_size */
  BadMessage,         /* a field has the wrong type, length or form */
  UnknownType,        /* a type in a namespace the server owns, not defined */
  SpoofedFrom,        /* `from` names another session */
  NotMember,          /* the thread was not joined */
  UnknownRecipient,   /* a `to` entry is neither a session nor a carried tag */
  Limit,              /* a per-session or per-thread bound was reached */
  QueueFull,          /* the recipient is away and its queue is full */
  UnknownCallback,    /* a callback_response nobody is waiting for */
  CallbackExpired,    /* a callback dropped unanswered to stay within bounds */
  BadToken,           /* a resume token that does not verify */
  ServerFull,         /* max-sessions reached */
  Forbidden,          /* the session's auth token does not grant it */
  RateLimited,        /* over the session's message or byte rate */
  NoSharedThread,     /* stream:* or file:* to a session sharing no thread */
  InvalidToken,       /* a renewed auth token (socket:token) did not verify */
};

const char *error_code_name (ErrorCode code);

struct ProtocolError
{
  ErrorCode code;
  std::string message;
};

/* A callback id or response: the original used array indices (integers);
 * strings are accepted too. `key` is canonical for lookups ("i:12", "s:ab"),
 * `json` is the value as JSON text, echoed back with its type intact. */
struct CallbackRef
{
  std::string key;
  std::string json;
};

/* A parsed and validated client message. */
class Message
{
public:
  static std::optional<Message> parse (std::string_view text,
      const ProtocolLimits & limits, ProtocolError * error);

  const std::string & type () const { return type_; }
  bool has_type () const { return !type_.empty (); }
  const std::vector<std::string> & to () const { return to_; }
  bool has_to () const { return has_to_; }
  const std::optional<std::string> & thread () const { return thread_; }
  const std::optional<std::string> & from () const { return from_; }
  const std::optional<CallbackRef> & callback_id () const { return callback_id_; }
  const std::optional<CallbackRef> & callback_response () const { return callback_response_; }

  /* A top-level member's value as JSON text, if present. */
  std::optional<std::string_view> member (std::string_view name) const;
  /* A top-level member's value when it is a string, decoded. */
  std::optional<std::string> string_member (std::string_view name) const;
  /* `data` as a list of strings, when it is a string or a non-empty array
   * of strings. */
  bool data_strings (std::vector<std::string> & out) const;

  /* Whether `constraints` share media: `video` or `audio` is truthy (as in
   * JavaScript), an absent `audio` following `video`. Absent, null or false
   * constraints share nothing. */
  bool shares_media () const;

  /* The wire form relayed to a recipient: `from` is set by the server,
   * `original_to` is set when delivery went through a tag, `from_name` when
   * the sender's token names it; both are removed otherwise. `seq` is left
   * to the outbox. Every other member is passed on byte for byte. */
  std::string relay_text (const std::string & from,
      const std::string * original_to = nullptr,
      const std::string * from_name = nullptr) const;

  const std::string & text () const { return text_; }

private:
  struct Member
  {
    std::string key;
    std::size_t start;          /* the key's opening quote */
    std::size_t value;          /* the value's first byte */
    std::size_t end;            /* one past the value */
    bool server_owned = false;  /* from, from_name, original_to, seq */
  };
  friend class Scanner;

  const Member *find (std::string_view name) const;

  std::string text_;
  std::vector<Member> members_;
  std::string type_;
  std::vector<std::string> to_;
  bool has_to_ = false;
  std::optional<std::string> thread_;
  std::optional<std::string> from_;
  std::optional<CallbackRef> callback_id_;
  std::optional<CallbackRef> callback_response_;
};

/* Server-built messages. Each returns the JSON text without `seq`.
 * `ref_type` and `thread` are those of the refused message, if any;
 * `grant` names the grant that refused it (forbidden). */
std::string error_text (ErrorCode code, std::string_view message,
    const CallbackRef * callback_response = nullptr,
    std::string_view ref_type = {}, std::string_view thread = {},
    std::string_view grant = {});
/* The answer to a renewal that verified: the new token's `exp` (0: the
 * server takes no tokens, and none is kept) and `name` (empty: none). */
std::string token_renewed_text (std::int64_t expires, std::string_view name,
    const CallbackRef * callback_response = nullptr);
std::string thread_disconnect_text (const std::string & thread,
    const std::string & from);
std::string socket_disconnect_text (const std::string & from);
/* A thread:connect with no constraints, as relayed from `from` (with
 * `from_name` unless empty). */
std::string thread_connect_text (const std::string & thread,
    const std::string & from, const std::string & from_name);

struct Greeting
{
  std::string id;
  std::string token;
  bool resumed = false;
  std::uint64_t missed = 0;
  double grace_seconds = 0;
  double ping_interval_seconds = 0;
  std::size_t max_message_size = 0;
  std::string name;           /* the auth token's name; empty: none */
  std::int64_t expires = 0;   /* the auth token's exp; 0: no token */
  std::string ice_servers;    /* a JSON array text; empty: none */
};
std::string greeting_text (const Greeting & greeting);

/* Prefix a message text with its per-recipient sequence number:
 * {"seq":N,...}. `text` must be a JSON object text. */
std::string with_seq (std::uint64_t seq, std::string_view text);

/* Append `s` (UTF-8) to `out` as a JSON string literal. */
void append_json_string (std::string & out, std::string_view s);

/* A valid name: 1..max bytes of UTF-8 without control characters. */
bool valid_name (std::string_view s, std::size_t max);

}  // namespace peerjs
