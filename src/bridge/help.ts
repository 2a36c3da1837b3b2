/**
 * `audioloop bridge --help`, apart from cli.ts so that the main CLI can show
 * it without loading the codec (cli.ts is loaded only to run a bridge).
 */
import { DYNAMIC_PT_MAX, DYNAMIC_PT_MIN } from './rtp';

export const BRIDGE_HELP = `usage: audioloop bridge N --send rtp://HOST:PORT [--sdp FILE] [options]
       audioloop bridge N --receive rtp://BIND:PORT [options]

VoIP bridge: Opus over RTP (RFC 3550, RFC 7587) to and from loop N.

--send      opens the server end of loop N for reading: audioloopN appears as
            a sink; what clients play into it is encoded as Opus (20 ms
            frames) and sent to HOST:PORT. Ends (exit 0) when the client goes
            away (ECONNRESET), after sending everything it played.
--receive   opens the server end of loop N for writing: audioloopN appears as
            a source; Opus RTP received on BIND:PORT goes through a jitter
            buffer (reordering, duplicates, Opus packet-loss concealment) and
            drift compensation (adaptive resampling) to clients that record.
            Ends (exit 0) when the recording client goes away (ECONNRESET),
            or after --idle-exit seconds without packets.

Addresses are numeric (127.0.0.1, [::1]). Metrics (packets, loss, jitter,
drift ppm, buffer fill) show in "audioloop status".

options:
      --sdp FILE          (send) write an SDP file for the stream, e.g. for
                          ffmpeg -protocol_whitelist file,udp,rtp -i FILE
  -r, --rate R            the loop's rate, 8000-192000 (default 48000; Opus
                          runs at 48000, other rates are resampled)
  -c, --channels C        1 or 2 (default 2)
      --latency MS        the latency the loop's node asks the sound server
                          for, 1-1000 ms (default: the clients'); see status
      --wait SEC          give up when no client starts within SEC seconds
                          (0.001-86400): exit 6, a message naming ETIMEDOUT
                          (default: wait forever)
      --clock             do not wait for a client (OPEN clock=1): send:
                          Opus of silence at the loop's rate until a client
                          plays; receive: the stream is played to nobody
                          (the daemon consumes it) until a client records
      --bitrate BPS       (send) Opus bitrate, 6000-510000 (default 64000 per channel)
      --payload-type PT   RTP payload type ${DYNAMIC_PT_MIN}-${DYNAMIC_PT_MAX} (send: default 96;
                          receive: default the first dynamic type seen)
      --jitter MODE       (receive) adaptive (default) or fixed
      --jitter-ms MS      (receive) fixed target, or adaptive starting target
                          (default 60)
      --jitter-min-ms MS  (receive) adaptive lower bound (default 20)
      --jitter-max-ms MS  (receive) adaptive upper bound (default 400)
      --no-drift          (receive) no drift compensation
      --idle-exit SEC     (receive) end after SEC seconds without packets,
                          once the stream has started (default: never)
  -s, --socket-dir DIR
  -q, --quiet
  -h, --help

exit codes: 0 done (client went away, idle, or Ctrl-C), 1 error, 2 usage,
3 no daemon, 4 loop refused (EBUSY/EINVAL/ENODEV), 6 --wait: no client
started in time (ETIMEDOUT)`;
