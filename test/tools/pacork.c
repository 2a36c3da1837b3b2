/*
 * pacork: a PulseAudio client that really corks (pa_stream_cork), for the
 * session-rule tests. Built by scripts/setup.sh against libpulse.
 *
 *   pacork play   DEVICE RATE CHANNELS CORK_AT_BYTES CORK_MS  < s16le PCM
 *   pacork record DEVICE RATE CHANNELS CORK_AT_BYTES CORK_MS TOTAL_BYTES > s16le PCM
 *
 * play: writes stdin to a playback stream on DEVICE; once CORK_AT_BYTES
 * were written, corks the stream for CORK_MS, uncorks and goes on; at EOF
 * drains and exits 0. record: reads from DEVICE to stdout; after
 * CORK_AT_BYTES corks for CORK_MS, uncorks; exits 0 after TOTAL_BYTES or
 * when the stream ends (exit 1 with a message if it failed). Prints
 * "corked" / "uncorked" on stderr when the server confirmed each.
 */
#include <pulse/pulseaudio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

static pa_mainloop *ml;
static int op_done;

static void success_cb(pa_stream *s, int ok, void *u) { (void)s; (void)u; op_done = ok ? 1 : -1; }

static int wait_op(pa_operation *o)
{
	op_done = 0;
	while (op_done == 0 && pa_operation_get_state(o) == PA_OPERATION_RUNNING)
		if (pa_mainloop_iterate(ml, 1, NULL) < 0) return -1;
	pa_operation_unref(o);
	return op_done == 1 ? 0 : -1;
}

static void sleep_iterate(long ms)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		long el = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
		if (el >= ms) return;
		pa_mainloop_prepare(ml, (int)((ms - el) * 1000));
		pa_mainloop_poll(ml);
		pa_mainloop_dispatch(ml);
	}
}

static int cork(pa_stream *s, int b)
{
	if (wait_op(pa_stream_cork(s, b, success_cb, NULL)) < 0) return -1;
	fprintf(stderr, b ? "corked\n" : "uncorked\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 7) { fprintf(stderr, "usage: see source\n"); return 2; }
	int play = strcmp(argv[1], "play") == 0;
	const char *dev = argv[2];
	pa_sample_spec ss = { PA_SAMPLE_S16LE, (uint32_t)atoi(argv[3]), (uint8_t)atoi(argv[4]) };
	size_t cork_at = strtoul(argv[5], NULL, 10);
	long cork_ms = atol(argv[6]);
	size_t total = argc > 7 ? strtoul(argv[7], NULL, 10) : 0;

	ml = pa_mainloop_new();
	pa_context *c = pa_context_new(pa_mainloop_get_api(ml), "pacork");
	if (pa_context_connect(c, NULL, PA_CONTEXT_NOFLAGS, NULL) < 0) return 1;
	while (pa_context_get_state(c) != PA_CONTEXT_READY) {
		if (!PA_CONTEXT_IS_GOOD(pa_context_get_state(c))) { fprintf(stderr, "pacork: context failed\n"); return 1; }
		pa_mainloop_iterate(ml, 1, NULL);
	}
	pa_stream *s = pa_stream_new(c, play ? "pacork playback" : "pacork record", &ss, NULL);
	int r = play ? pa_stream_connect_playback(s, dev, NULL, PA_STREAM_DONT_MOVE, NULL, NULL)
		     : pa_stream_connect_record(s, dev, NULL, PA_STREAM_DONT_MOVE);
	if (r < 0) return 1;
	while (pa_stream_get_state(s) != PA_STREAM_READY) {
		if (!PA_STREAM_IS_GOOD(pa_stream_get_state(s))) { fprintf(stderr, "pacork: stream failed: %s\n", pa_strerror(pa_context_errno(c))); return 1; }
		pa_mainloop_iterate(ml, 1, NULL);
	}
	size_t moved = 0;
	int corked_once = 0;
	char buf[4096];
	for (;;) {
		if (!PA_STREAM_IS_GOOD(pa_stream_get_state(s))) { fprintf(stderr, "pacork: stream ended: %s\n", pa_strerror(pa_context_errno(c))); return moved ? 0 : 1; }
		if (!corked_once && cork_at > 0 && moved >= cork_at) {
			corked_once = 1;
			if (cork(s, 1) < 0) return 1;
			sleep_iterate(cork_ms);
			if (cork(s, 0) < 0) return 1;
		}
		if (play) {
			size_t w = pa_stream_writable_size(s);
			if (w == (size_t)-1) return 1;
			if (w == 0) { pa_mainloop_iterate(ml, 1, NULL); continue; }
			size_t want = w < sizeof(buf) ? w : sizeof(buf);
			if (!corked_once && cork_at > moved && want > cork_at - moved) want = cork_at - moved;
			want -= want % (2 * ss.channels);
			ssize_t n = read(0, buf, want);
			if (n <= 0) break;
			pa_stream_write(s, buf, (size_t)n, NULL, 0, PA_SEEK_RELATIVE);
			moved += (size_t)n;
		} else {
			const void *d;
			size_t n;
			if (pa_stream_peek(s, &d, &n) < 0) return 1;
			if (n == 0) { pa_mainloop_iterate(ml, 1, NULL); continue; }
			if (d) {
				if (total && moved + n > total) n = total - moved;
				if (fwrite(d, 1, n, stdout) != n) return 1;
				moved += n;
			}
			pa_stream_drop(s);
			if (total && moved >= total) break;
		}
	}
	if (play && wait_op(pa_stream_drain(s, success_cb, NULL)) < 0) { fprintf(stderr, "pacork: drain failed\n"); return 1; }
	fflush(stdout);
	pa_stream_disconnect(s);
	pa_context_disconnect(c);
	return 0;
}
