/*
 * pwstall: a PipeWire recorder (pw_stream, input) that is slow to start,
 * for the start-gating test. Built by scripts/setup.sh against
 * libpipewire-0.3.
 *
 *   pwstall TARGET RATE CHANNELS FRAMES STALL_MS > s16le PCM
 *
 * Records FRAMES frames of s16le from the node named TARGET to stdout and
 * exits 0 (1 with a message if the stream failed or ended first); with
 * FRAMES 0 it records until its stream is ended (by the daemon) and exits 0. It is
 * slow to take the Start command: its main loop stalls STALL_MS in the
 * command callback, so the server sees the node running only after the
 * stall, while the stream's links are active from before Start was sent
 * (PipeWire activates the links, then starts the nodes). That is the
 * window a loaded client (a busy pipewire-pulse, say) leaves between "link
 * active" and "node running"; data played into the link then is lost
 * (here: no buffer is recycled while the main loop, which runs the process
 * callback, stalls). Prints "stalled" on stderr after the stall.
 */
#include <pipewire/pipewire.h>
#include <spa/node/command.h>
#include <spa/param/audio/format-utils.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct data {
	struct pw_main_loop *loop;
	struct pw_stream *stream;
	long stall_ms;
	int stalled;
	uint32_t stride;
	uint64_t want, got;
	int rc;
};

/* main loop: Start is acknowledged only when this returns */
static void on_command(void *userdata, const struct spa_command *command)
{
	struct data *d = userdata;
	if (SPA_NODE_COMMAND_ID(command) != SPA_NODE_COMMAND_Start || d->stalled++)
		return;
	struct timespec ts = { d->stall_ms / 1000, (d->stall_ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
	fprintf(stderr, "stalled\n");
}

/* main loop (no RT_PROCESS) */
static void on_process(void *userdata)
{
	struct data *d = userdata;
	struct pw_buffer *b = pw_stream_dequeue_buffer(d->stream);
	if (b == NULL)
		return;
	struct spa_data *sd = &b->buffer->datas[0];
	if (sd->data != NULL && sd->chunk->size > 0) {
		uint32_t off = SPA_MIN(sd->chunk->offset, sd->maxsize);
		uint64_t n = SPA_MIN(sd->chunk->size, sd->maxsize - off) / d->stride;
		if (d->want && n > d->want - d->got)
			n = d->want - d->got;
		if (fwrite(SPA_PTROFF(sd->data, off, void), d->stride, n, stdout) != n)
			d->rc = 1;
		d->got += n;
	}
	pw_stream_queue_buffer(d->stream, b);
	if ((d->want && d->got >= d->want) || d->rc)
		pw_main_loop_quit(d->loop);
}

static void on_state(void *userdata, enum pw_stream_state old, enum pw_stream_state state, const char *error)
{
	struct data *d = userdata;
	(void)old;
	if (state == PW_STREAM_STATE_ERROR || state == PW_STREAM_STATE_UNCONNECTED) {
		/* FRAMES 0: the end of the stream is the end of the recording */
		if (d->want || d->got == 0) {
			fprintf(stderr, "pwstall: stream %s: %s\n", pw_stream_state_as_string(state), error ? error : "");
			d->rc = 1;
		} else {
			fprintf(stderr, "ended after %llu frames\n", (unsigned long long)d->got);
		}
		pw_main_loop_quit(d->loop);
	}
}

static const struct pw_stream_events events = {
	PW_VERSION_STREAM_EVENTS,
	.state_changed = on_state,
	.command = on_command,
	.process = on_process,
};

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: pwstall TARGET RATE CHANNELS FRAMES STALL_MS > s16le PCM\n");
		return 2;
	}
	struct data d = { 0 };
	uint32_t rate = (uint32_t)atoi(argv[2]), channels = (uint32_t)atoi(argv[3]);
	d.want = strtoull(argv[4], NULL, 10);
	d.stall_ms = atol(argv[5]);
	d.stride = 2 * channels;
	pw_init(&argc, &argv);
	d.loop = pw_main_loop_new(NULL);
	struct pw_properties *props = pw_properties_new(PW_KEY_MEDIA_TYPE, "Audio", PW_KEY_MEDIA_CATEGORY, "Capture",
							PW_KEY_MEDIA_ROLE, "Production", PW_KEY_NODE_NAME, "pwstall",
							"target.object", argv[1], NULL);
	d.stream = pw_stream_new_simple(pw_main_loop_get_loop(d.loop), "pwstall", props, &events, &d);
	uint8_t buf[1024];
	struct spa_pod_builder bld = SPA_POD_BUILDER_INIT(buf, sizeof(buf));
	struct spa_audio_info_raw raw = { .format = SPA_AUDIO_FORMAT_S16_LE, .rate = rate, .channels = channels };
	const struct spa_pod *params[1] = { spa_format_audio_raw_build(&bld, SPA_PARAM_EnumFormat, &raw) };
	if (pw_stream_connect(d.stream, PW_DIRECTION_INPUT, PW_ID_ANY,
			      PW_STREAM_FLAG_AUTOCONNECT | PW_STREAM_FLAG_MAP_BUFFERS | PW_STREAM_FLAG_DONT_RECONNECT, params, 1) < 0) {
		fprintf(stderr, "pwstall: cannot connect\n");
		return 1;
	}
	pw_main_loop_run(d.loop);
	fflush(stdout);
	pw_stream_destroy(d.stream);
	pw_main_loop_destroy(d.loop);
	pw_deinit();
	if (d.want && d.got < d.want && d.rc == 0) {
		fprintf(stderr, "pwstall: %llu of %llu frames\n", (unsigned long long)d.got, (unsigned long long)d.want);
		return 1;
	}
	return d.rc;
}
