/* Files between members, as docs/protocol.md ("Files over data channels")
 * says: offered through the server, sent on a data channel of their own
 * per transfer (label file:<id>:<nonce>), chunks within the size the
 * receiver takes, flow control on the channel's buffered amount, SHA-256
 * checked at the end, cancel from either side.
 *
 * Threads: offers and requests come from the application (any thread) and
 * the session's mesh thread; each sending transfer reads its file on a
 * thread of its own; a receiving transfer runs on webrtcbin's thread, which
 * delivers the channel's messages. The table of transfers is under a lock.
 */
#pragma once

#include <gst/gst.h>
#include <gst/webrtc/webrtc.h>
#include <json-glib/json-glib.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace peerjs {

/* Largest chunk on a channel: webrtcbin's limit, between pipelines. */
constexpr gsize FILE_CHUNK_MAX = 65536;
/* Chunks browsers (and peer.js) send and take. */
constexpr gsize FILE_CHUNK_DEFAULT = 16384;

enum class Accept
{
  None,       /* nothing is received */
  Signal,     /* what the application asks for with request-file */
  All,        /* every offer is requested at once */
};

/* What Files needs from the session. */
class FileHost
{
public:
  virtual ~FileHost () = default;
  virtual void send (JsonObject * msg) = 0;
  virtual void post (GstStructure * s) = 0;
  virtual void invoke (std::function<void ()> f) = 0;
  /* Run `f` on the mesh thread in `ms` milliseconds (dropped if the
   * session stops first). */
  virtual void invoke_later (guint ms, std::function<void ()> f) = 0;
  /* A data channel labelled `label` to `member`, handed to `ready` on the
   * mesh thread once the connection can carry it (null: it cannot). */
  virtual void open_channel (const std::string & member,
      const std::string & label,
      std::function<void (GstWebRTCDataChannel *)> ready) = 0;
  /* A transfer with `member` ended: its connection may close now. */
  virtual void transfer_ended (const std::string & member) = 0;
  virtual GstElement *element () = 0;
};

class Files
{
public:
  struct Settings
  {
    std::string download_dir;   /* "" : not saved */
    Accept accept = Accept::Signal;
    bool pads = false;          /* a receiving element: file_<member>_<id> */
  };

  explicit Files (FileHost & host);
  ~Files ();

  void configure (const Settings & settings);

  /* Application side. offer() returns the offer's id, or "" with `error`
   * set. */
  std::string offer (const std::string & path, const std::string & name,
      const std::vector<std::string> & to,
      const std::vector<std::string> & threads, bool temporary,
      std::string * error);
  bool request (const std::string & member, const std::string & id,
      std::string * error);
  bool cancel (const std::string & id);

  /* Mesh thread: the server's messages about files. */
  void on_offer (JsonObject * msg);
  void on_request (JsonObject * msg);
  void on_cancel (JsonObject * msg);
  /* A channel the member opened to us (webrtcbin's thread). */
  void incoming (const std::string & member, GstWebRTCDataChannel * channel);
  /* The connection to `member` is closing: its transfers fail. */
  void member_gone (const std::string & member);
  bool busy (const std::string & member);
  /* End every transfer (the element stops). */
  void stop ();

  struct Transfer;

private:
  struct Offer
  {
    std::string path;
    std::string name;
    std::string mime;
    guint64 size = 0;
    bool temporary = false;     /* ours to delete: a file pad's stream */
  };
  struct Offered               /* by a member, to us */
  {
    std::string name;
    std::string mime;
    guint64 size = 0;
  };

  void start_sending (const std::string & member, const std::string & id,
      const Offer & offer, gsize chunk);
  void add (std::shared_ptr<Transfer> t);
  void remove (Transfer * t);
  std::shared_ptr<Transfer> find_wanted (const std::string & member,
      const std::string & id);

  /* webrtcbin 1.22 gives a new channel the lowest stream id free on its
   * side, which may be that of a channel the member is still closing: the
   * member then takes the new channel for the old one and never opens it.
   * A member's next channel waits until its last one closed a while ago. */
  gint64 quiet_until (const std::string & member);
  void note_close (const std::string & member);

  FileHost & host_;
  std::mutex lock_;
  std::map<std::string, gint64> last_close_;
  Settings settings_;
  std::map<std::string, Offer> offers_;                  /* ours, by id */
  std::map<std::string, Offered> offered_;               /* member/id */
  std::vector<std::shared_ptr<Transfer>> transfers_;
  friend struct Transfer;
};

}  // namespace peerjs
