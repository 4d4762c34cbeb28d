/* A stand-in for an IP camera: an RTSP server (gst-rtsp-server) serving
 * H.264 of a moving test pattern at rtsp://127.0.0.1:PORT/camera, for the
 * examples suite's bridge-rtsp-camera.sh scenario and for trying the bridge
 * without a camera.
 *
 *   build/tests/rtsp-camera [PORT [WIDTHxHEIGHT@FPS]]
 *
 * PORT 0 (the default) takes a free one. Prints "rtsp-camera serving URL"
 * once it listens, then serves until killed. */
#include <gst/gst.h>
#include <gst/rtsp-server/rtsp-server.h>

#include <stdio.h>
#include <stdlib.h>

int
main (int argc, char **argv)
{
  gst_init (&argc, &argv);
  const char *port = argc > 1 ? argv[1] : "0";
  int width = 320, height = 240, fps = 15;
  if (argc > 2 && sscanf (argv[2], "%dx%d@%d", &width, &height, &fps) != 3) {
    fprintf (stderr, "usage: %s [PORT [WIDTHxHEIGHT@FPS]]\n", argv[0]);
    return 2;
  }

  GstRTSPServer *server = gst_rtsp_server_new ();
  gst_rtsp_server_set_address (server, "127.0.0.1");
  gst_rtsp_server_set_service (server, port);
  GstRTSPMediaFactory *factory = gst_rtsp_media_factory_new ();
  /* A camera's usual stream: constrained baseline, a key frame every 2 s,
   * parameter sets in band. One encoder for every client (shared). */
  gchar *launch = g_strdup_printf ("( videotestsrc is-live=true pattern=ball "
      "! video/x-raw,width=%d,height=%d,framerate=%d/1 "
      "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=%d "
      "! video/x-h264,profile=constrained-baseline "
      "! rtph264pay name=pay0 pt=96 config-interval=-1 )", width, height,
      fps, 2 * fps);
  gst_rtsp_media_factory_set_launch (factory, launch);
  g_free (launch);
  gst_rtsp_media_factory_set_shared (factory, TRUE);
  GstRTSPMountPoints *mounts = gst_rtsp_server_get_mount_points (server);
  gst_rtsp_mount_points_add_factory (mounts, "/camera", factory);
  g_object_unref (mounts);

  if (gst_rtsp_server_attach (server, NULL) == 0) {
    fprintf (stderr, "rtsp-camera: cannot listen on 127.0.0.1:%s\n", port);
    return 1;
  }
  printf ("rtsp-camera serving rtsp://127.0.0.1:%d/camera\n",
      gst_rtsp_server_get_bound_port (server));
  fflush (stdout);
  GMainLoop *loop = g_main_loop_new (NULL, FALSE);
  g_main_loop_run (loop);
  return 0;
}
