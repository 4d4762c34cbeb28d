/* Which encoder or decoder gst/peerjs/encoders.cpp chooses for a codec, over
 * given lists of installed elements and their ranks: hardware ones
 * included, which the machines running this suite do not have. */
#include "../../gst/peerjs/encoders.h"

#include <gst/check/gstcheck.h>

GST_DEBUG_CATEGORY (gst_peerjs_debug);

using peerjs::choose_element;
using peerjs::Installed;

namespace {

/* fail_unless_equals_string keeps a pointer: the string must outlive it. */
#define assert_string(expr, want) G_STMT_START { \
    std::string got_ = (expr); \
    fail_unless (got_ == (want), "%s gave '%s', wanted '%s'", #expr, \
        got_.c_str (), (want)); \
  } G_STMT_END

const guint NONE = GST_RANK_NONE, MARGINAL = GST_RANK_MARGINAL,
    PRIMARY = GST_RANK_PRIMARY;

GST_START_TEST (test_highest_rank)
{
  /* Debian's ranks: x264enc primary, openh264enc marginal. */
  Installed both = { { "openh264enc", MARGINAL }, { "x264enc", PRIMARY } };
  assert_string (choose_element ("H264", true, both), "x264enc");
  Installed open = { { "openh264enc", MARGINAL }, { "vp8enc", PRIMARY } };
  assert_string (choose_element ("H264", true, open), "openh264enc");
  /* A rank raised by GST_PLUGIN_FEATURE_RANK wins. */
  Installed raised = { { "x264enc", PRIMARY }, { "openh264enc", PRIMARY + 1 } };
  assert_string (choose_element ("H264", true, raised), "openh264enc");
}
END_TEST;

GST_START_TEST (test_hardware)
{
  /* VA's encoders come with rank none in GStreamer 1.22: software of a
   * higher rank stays first... */
  Installed va = { { "x264enc", PRIMARY }, { "vah264enc", NONE } };
  assert_string (choose_element ("H264", true, va), "x264enc");
  /* ...and alone they are taken. */
  Installed va_only = { { "vah264enc", NONE }, { "vp8enc", PRIMARY } };
  assert_string (choose_element ("H264", true, va_only), "vah264enc");
  /* At equal rank, hardware first, whatever the list's order. */
  Installed nv = { { "x264enc", PRIMARY }, { "nvh264enc", PRIMARY },
    { "v4l2h264enc", PRIMARY } };
  std::string chosen = choose_element ("H264", true, nv);
  fail_unless (chosen == "nvh264enc", "chose %s", chosen.c_str ());
  Installed vp9 = { { "vp9enc", PRIMARY }, { "vavp9enc", PRIMARY } };
  assert_string (choose_element ("VP9", true, vp9), "vavp9enc");
  Installed av1 = { { "av1enc", PRIMARY }, { "vaav1enc", NONE },
    { "svtav1enc", PRIMARY } };
  assert_string (choose_element ("AV1", true, av1), "av1enc");
}
END_TEST;

GST_START_TEST (test_none_fits)
{
  /* Another codec's encoders, decoders, and elements we do not know. */
  Installed other = { { "vp8enc", PRIMARY }, { "avdec_h264", PRIMARY },
    { "myh264enc", PRIMARY + 10 } };
  fail_unless (choose_element ("H264", true, other).empty ());
  fail_unless (choose_element ("H264", true, {}).empty ());
  assert_string (choose_element ("H264", false, other), "avdec_h264");
  fail_unless (choose_element ("VP9", false, other).empty ());
  /* What the user is told, with the Debian package of the first known
   * software element. */
  const peerjs::Codec h264 = { "H264", peerjs::Kind::Video, "video/x-h264",
    90000, 102, "x264enc", "h264parse", "rtph264pay", "rtph264depay",
    "avdec_h264" };
  assert_string (peerjs::missing_encoder_hint (h264),
      "x264enc, openh264enc (Debian package gstreamer1.0-plugins-ugly)");
  assert_string (peerjs::missing_decoder_hint (h264),
      "avdec_h264, openh264dec (Debian package gstreamer1.0-libav)");
  assert_string (peerjs::decoder_package (h264), "gstreamer1.0-libav");
}
END_TEST;

Suite *
codecs_suite ()
{
  Suite *s = suite_create ("codecs");
  TCase *tc = tcase_create ("choice");
  tcase_add_test (tc, test_highest_rank);
  tcase_add_test (tc, test_hardware);
  tcase_add_test (tc, test_none_fits);
  suite_add_tcase (s, tc);
  return s;
}

}  // namespace

GST_CHECK_MAIN (codecs);
