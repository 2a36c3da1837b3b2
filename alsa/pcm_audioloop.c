/*
 * pcm_audioloop.c: an ALSA external PCM plugin (ioplug) that is the server
 * end of an audioloop loop, over the daemon's socket protocol (README
 * "Server protocol", src/protocol.ts). Any ALSA program can then be the
 * server:
 *
 *   arecord -D audioloop:2 -f S16_LE -r 48000 -c 2 call.wav   # reads loop 2 (audioloop2 is a sink)
 *   aplay -D audioloop:1 music.wav                            # writes loop 1 (audioloop1 is a source)
 *
 * The stream direction is the mode: capture = mode=read, playback =
 * mode=write. One direction per handle, like the seed's O_RDONLY/O_WRONLY.
 *
 * Life of a handle:
 *   open       parses the arguments; the loop's socket must exist, else a
 *              clear error at once (no daemon: ENOENT; a loop the daemon does
 *              not serve: ENODEV). Nothing is sent yet.
 *   hw_params  offers exactly the protocol's formats (U8, S16_LE, S24_3LE,
 *              S32_LE, FLOAT_LE), 8000-192000 Hz, 1-8 channels, interleaved
 *              (RW or MMAP), so a bad request fails here, in ALSA's own words.
 *   first use  (start, the first write, or poll descriptors) connects and
 *              sends the OPEN line with the final parameters, app= (the
 *              program's name, /proc/self/comm) and pid=. Programs that set
 *              the parameters one at a time (aoss: one hw_params per ioctl)
 *              open the loop once, with the last set. A refusal (EBUSY:
 *              another server holds the loop, named in the daemon's message)
 *              is printed with SNDERR and returned as -errno.
 *   START      the first read or write waits until a client starts (the
 *              daemon's START line). Blocking handles block; non-blocking
 *              ones get -EAGAIN, and poll() reports nothing until then. With
 *              the argument wait MS (OPEN wait=MS) the daemon sends TIMEOUT
 *              each MS without a client: the waiting read or write (readi,
 *              writei, snd_pcm_wait/poll_revents) returns -ETIMEDOUT once per
 *              TIMEOUT and the handle stays open, so the next one waits
 *              again (arecord/aplay stop: "Connection timed out"). With
 *              the argument clock 1 (OPEN clock=1) nothing waits for a
 *              client: capture reads silence at the loop's rate until START
 *              (each SILENCE frames=N line from the daemon puts N frames of
 *              silence into the ring), playback writes at once and the
 *              daemon consumes the data at the loop's rate until START. The
 *              poll descriptor is the socket, waiting for POLLIN (the START
 *              line; capture: then PCM); playback asks for POLLOUT only after
 *              START (clock 1: from the open). poll_revents turns socket readiness into PCM readiness
 *              (POLLIN/POLLOUT only when avail >= avail_min).
 *   capture    PCM from the socket goes into a ring of buffer_size frames;
 *              avail is its fill. When the client goes away the daemon
 *              closes after every byte in flight: those frames are delivered,
 *              the last period is completed with silence (so programs that
 *              read whole periods, as arecord does, write every frame), then
 *              the PCM is DISCONNECTED: reads, avail and poll give -ENODEV.
 *   playback   writes go into the ring and out to the socket as it takes
 *              them (the daemon's backpressure is the pace). RESET or EOF from
 *              the daemon (the client went away) makes the PCM DISCONNECTED
 *              (-ENODEV). drain() flushes the ring, shuts the socket's
 *              sending side and waits until the daemon has played out
 *              everything (it closes the connection then).
 *
 * Why -ENODEV (SND_PCM_STATE_DISCONNECTED) and not -ECONNRESET at the end
 * of the stream: alsa-lib maps the PCM state to the error itself (blocking
 * and non-blocking reads, avail, snd_pcm_wait after POLLERR, status) and
 * only DISCONNECTED survives every one of those paths; a pointer error
 * becomes XRUN (-EPIPE), which snd_pcm_recover() and arecord "recover" by
 * preparing again, and a POLLERR with any other state becomes -EIO.
 * -ENODEV is what ALSA programs already treat as "the device is gone, stop"
 * (a USB card unplugged), and snd_pcm_recover() does not try to recover it.
 * poll_revents then fails with -ENODEV as well (besides POLLERR): PortAudio
 * takes a bare POLLERR for an xrun and would poll again forever.
 *
 * Plugin arguments (see 60-audioloop.conf): loop N (0-15), socket_dir DIR
 * (default as the daemon's: $XDG_RUNTIME_DIR/audioloop, else
 * /tmp/audioloop-<uid>), wait MS (0 = forever, the default; else
 * 1-86400000: OPEN wait=MS, see START above), clock 0|1 (default 0; 1:
 * OPEN clock=1, see START above).
 *
 * Threads: every callback runs on the application's thread that called
 * alsa-lib, under alsa-lib's PCM lock (or with it released around
 * poll/drain, as ioplug does); the plugin has no thread of its own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <linux/sockios.h>

#include <alsa/asoundlib.h>
#include <alsa/pcm_external.h>

#define MAX_LINE 1024
/* the daemon answers OPEN at once; a hung daemon must not hang the program */
#define REPLY_TIMEOUT_MS 10000

struct audioloop {
	snd_pcm_ioplug_t io;
	int loop;
	char dir[PATH_MAX];
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];

	int fd;            /* the connection to the daemon, -1 before the OPEN */
	int started;       /* START received */
	int eof;           /* the daemon closed its side (capture: after the data) */
	int gone;          /* the stream has ended for good: DISCONNECTED */
	int shut;          /* playback: our sending side is shut (drain) */
	int wait_ms;       /* OPEN wait=MS, 0: wait forever */
	int timed_out;     /* a TIMEOUT line not reported yet (-ETIMEDOUT) */
	int clock;         /* OPEN clock=1: no wait for a client (silence / consumed until START) */
	unsigned long long silence_frames; /* capture, clock 1: frames of SILENCE lines received */
	unsigned long long silence_dropped; /* of those, the ones the ring had no room for (the program did not read) */

	/* the parameters of the OPEN line (from hw_params) */
	const char *fmt;
	unsigned int rate, channels, frame;
	unsigned char silence;

	/* the ring between the socket and the application, in bytes */
	unsigned char *ring;
	size_t ring_size, ring_head, ring_fill;

	snd_pcm_uframes_t boundary;
	snd_pcm_uframes_t avail_min;
	/* capture: silence frames still to deliver after the end of the data */
	snd_pcm_uframes_t pad;
	int padded;
	/* playback: frames taken from the application so far (mod boundary) */
	snd_pcm_uframes_t written;
};

static const struct {
	snd_pcm_format_t alsa;
	const char *name;
	unsigned int bytes;
	unsigned char silence;
} formats[] = {
	{ SND_PCM_FORMAT_U8, "u8", 1, 0x80 },
	{ SND_PCM_FORMAT_S16_LE, "s16le", 2, 0 },
	{ SND_PCM_FORMAT_S24_3LE, "s24le", 3, 0 },
	{ SND_PCM_FORMAT_S32_LE, "s32le", 4, 0 },
	{ SND_PCM_FORMAT_FLOAT_LE, "f32le", 4, 0 },
};
#define N_FORMATS (sizeof(formats) / sizeof(formats[0]))

/* ---------------------------------------------------------------- helpers */

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* poll one fd; >0 ready, 0 timeout, -errno */
static int wait_fd(int fd, short events, int timeout_ms, short *revents)
{
	struct pollfd p = { .fd = fd, .events = events };
	long long end = timeout_ms < 0 ? 0 : now_ms() + timeout_ms;
	for (;;) {
		int left = timeout_ms < 0 ? -1 : (int)(end - now_ms());
		if (timeout_ms >= 0 && left < 0)
			left = 0;
		int r = poll(&p, 1, left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (revents)
			*revents = p.revents;
		return r;
	}
}

/* encodeURIComponent */
static void pct_encode(const char *in, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < cap; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    strchr("-_.!~*'()", *p)) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	out[o] = 0;
}

static void program_name(char *out, size_t cap)
{
	out[0] = 0;
	FILE *f = fopen("/proc/self/comm", "re");
	if (f) {
		if (!fgets(out, (int)cap, f))
			out[0] = 0;
		fclose(f);
	}
	out[strcspn(out, "\n")] = 0;
	if (!out[0])
		snprintf(out, cap, "alsa");
}

/*
 * Takes one complete line from the socket if there is one (without blocking),
 * leaving whatever follows it (PCM) in the socket. 1 a line, 0 none yet,
 * -ECONNRESET the daemon closed, other -errno. keep_timeout: a TIMEOUT line
 * stays in the socket (2), so that poll still wakes for it.
 */
static int take_line_ex(int fd, char *line, size_t cap, int keep_timeout)
{
	char peek[MAX_LINE + 1];
	ssize_t n = recv(fd, peek, sizeof(peek) - 1, MSG_PEEK | MSG_DONTWAIT);
	if (n == 0)
		return -ECONNRESET;
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
	char *nl = memchr(peek, '\n', (size_t)n);
	if (!nl)
		return n >= MAX_LINE ? -EPROTO : 0;
	if (keep_timeout && n >= 7 && memcmp(peek, "TIMEOUT", 7) == 0)
		return 2;
	size_t len = (size_t)(nl - peek) + 1;
	if (recv(fd, peek, len, MSG_DONTWAIT) != (ssize_t)len)
		return -EIO;
	len--;
	if (len && peek[len - 1] == '\r')
		len--;
	if (len >= cap)
		len = cap - 1;
	memcpy(line, peek, len);
	line[len] = 0;
	return 1;
}

static int take_line(int fd, char *line, size_t cap)
{
	return take_line_ex(fd, line, cap, 0);
}

/* ------------------------------------------------------------- the stream */

static void end_stream(struct audioloop *al)
{
	/* [app] the end for good: every alsa-lib path now gives -ENODEV */
	al->gone = 1;
	snd_pcm_ioplug_set_state(&al->io, SND_PCM_STATE_DISCONNECTED);
}

static void disconnect(struct audioloop *al)
{
	if (al->fd >= 0)
		close(al->fd);
	al->fd = -1;
	al->started = al->eof = al->gone = al->shut = al->padded = 0;
	al->pad = 0;
	al->ring_head = al->ring_fill = 0;
	al->written = 0;
}

/*
 * Connects and does the handshake with the parameters of hw_params.
 * 0 or -errno (the daemon's ERR code: EBUSY, EINVAL, ENODEV...).
 */
static int ensure_open(struct audioloop *al)
{
	if (al->fd >= 0)
		return 0;
	if (al->gone)
		return -ENODEV;
	if (!al->fmt) {
		SNDERR("audioloop:%d: the PCM is not set up (hw_params)", al->loop);
		return -EBADFD;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", al->path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		if (e == ENOENT || e == ECONNREFUSED)
			SNDERR("audioloop:%d: no audioloop daemon answers at %s (%s; start one with \"audioloop daemon\")",
			       al->loop, al->path, strerror(e));
		else
			SNDERR("audioloop:%d: cannot connect to %s: %s", al->loop, al->path, strerror(e));
		return -e;
	}
	char comm[64], app[200], line[MAX_LINE + 1];
	program_name(comm, sizeof(comm));
	pct_encode(comm, app, sizeof(app));
	char wait[48] = "";
	if (al->wait_ms > 0)
		snprintf(wait, sizeof(wait), " wait=%d", al->wait_ms);
	if (al->clock)
		snprintf(wait + strlen(wait), sizeof(wait) - strlen(wait), " clock=1");
	int n = snprintf(line, sizeof(line), "OPEN mode=%s format=%s rate=%u channels=%u nonblock=%d%s app=%s pid=%d\n",
			 al->io.stream == SND_PCM_STREAM_CAPTURE ? "read" : "write", al->fmt, al->rate,
			 al->channels, al->io.nonblock ? 1 : 0, wait, app, (int)getpid());
	if (send(fd, line, (size_t)n, MSG_NOSIGNAL) != n) {
		int e = errno ? errno : EIO;
		close(fd);
		SNDERR("audioloop:%d: cannot send the OPEN line: %s", al->loop, strerror(e));
		return -e;
	}
	/* the reply: one line, then (later) START */
	long long end = now_ms() + REPLY_TIMEOUT_MS;
	int r;
	for (;;) {
		r = take_line(fd, line, sizeof(line));
		if (r != 0)
			break;
		int left = (int)(end - now_ms());
		if (left <= 0 || wait_fd(fd, POLLIN, left, NULL) == 0) {
			r = -ETIMEDOUT;
			break;
		}
	}
	if (r < 0) {
		close(fd);
		SNDERR("audioloop:%d: no answer to OPEN from the daemon at %s: %s", al->loop, al->path, strerror(-r));
		return r;
	}
	if (strncmp(line, "OK ", 3) != 0) {
		close(fd);
		char code[32] = "EIO";
		int err = EIO, off = 0;
		if (sscanf(line, "ERR %31s %d %n", code, &err, &off) >= 2 && err > 0) {
			SNDERR("audioloop:%d: %s: %s", al->loop, code, line + off);
			return -err;
		}
		SNDERR("audioloop:%d: unexpected reply from the daemon: %.80s", al->loop, line);
		return -EPROTO;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	al->fd = fd;
	return 0;
}

/*
 * [app] capture, clock 1: a SILENCE frames=N line before START puts N frames
 * of silence into the ring; what does not fit is dropped (the program did
 * not read: an overrun, as the daemon's ring would have after START).
 */
static void add_silence(struct audioloop *al, const char *line)
{
	char *end;
	unsigned long long n = strtoull(line + 15, &end, 10);
	if (*end || n == 0 || al->io.stream != SND_PCM_STREAM_CAPTURE || !al->ring)
		return;
	al->silence_frames += n;
	size_t room = (al->ring_size - al->ring_fill) / al->frame;
	if (n > room) {
		al->silence_dropped += n - room;
		n = room;
	}
	size_t left = (size_t)n * al->frame;
	while (left > 0) {
		size_t tail = (al->ring_head + al->ring_fill) % al->ring_size;
		size_t len = al->ring_size - tail < left ? al->ring_size - tail : left;
		memset(al->ring + tail, al->silence, len);
		al->ring_fill += len;
		left -= len;
	}
}

/*
 * [app] consumes the START line when it is there; 1 started, 0 not yet,
 * -ENODEV ended. TIMEOUT lines before it set timed_out when consumed
 * (take_timeout); otherwise they stay in the socket for poll_revents or
 * wait_start to report, since pointer() cannot report an error.
 */
static int check_start_ex(struct audioloop *al, int take_timeout)
{
	if (al->started)
		return 1;
	if (al->gone)
		return -ENODEV;
	if (al->fd < 0)
		return 0;
	char line[MAX_LINE + 1];
	int r;
	for (;;) {
		r = take_line_ex(al->fd, line, sizeof(line), !take_timeout);
		if (r == 1 && strncmp(line, "TIMEOUT", 7) == 0 && (line[7] == 0 || line[7] == ' ')) {
			al->timed_out = 1;
			continue;
		}
		if (r == 1 && strncmp(line, "SILENCE frames=", 15) == 0) {
			add_silence(al, line);
			continue;
		}
		break;
	}
	if (r == 0 || r == 2)
		return 0;
	if (r < 0 || strncmp(line, "START", 5) != 0) {
		/* EOF or RESET before any client: the daemon is stopping */
		al->eof = 1;
		end_stream(al);
		return -ENODEV;
	}
	al->started = 1;
	al->timed_out = 0; /* START came: nothing waits any more */
	return 1;
}

static int check_start(struct audioloop *al)
{
	return check_start_ex(al, 0);
}

/* [app] a TIMEOUT not reported yet: -ETIMEDOUT once, then the next call waits again */
static int take_timeout(struct audioloop *al)
{
	if (!al->timed_out)
		return 0;
	al->timed_out = 0;
	return -ETIMEDOUT;
}

/* capture: moves what the socket holds into the ring (never blocks) */
static void fill_ring(struct audioloop *al)
{
	if (al->fd < 0 || !al->started || al->eof || !al->ring)
		return;
	while (al->ring_fill < al->ring_size) {
		size_t tail = (al->ring_head + al->ring_fill) % al->ring_size;
		size_t room = al->ring_size - al->ring_fill;
		if (room > al->ring_size - tail)
			room = al->ring_size - tail;
		ssize_t n = recv(al->fd, al->ring + tail, room, MSG_DONTWAIT);
		if (n > 0) {
			al->ring_fill += (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		/* 0: the client went away after every byte in flight (or an error) */
		al->eof = 1;
		return;
	}
}

/* playback: sends what the ring holds as far as the socket takes it (never blocks) */
static int flush_ring(struct audioloop *al)
{
	if (!al->started && al->clock)
		check_start(al); /* clock 1: data goes out before START; the START (or RESET) line first */
	if (al->fd < 0 || (!al->started && !al->clock) || al->gone)
		return al->gone ? -ENODEV : 0;
	/* RESET or EOF from the daemon: the client went away */
	char c;
	ssize_t p = recv(al->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (p == 0 || (p < 0 && errno != EAGAIN && errno != EWOULDBLOCK) || (p == 1 && c == 'R')) {
		end_stream(al);
		return -ENODEV;
	}
	while (al->ring_fill > 0) {
		size_t len = al->ring_fill;
		if (len > al->ring_size - al->ring_head)
			len = al->ring_size - al->ring_head;
		ssize_t n = send(al->fd, al->ring + al->ring_head, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0) {
			al->ring_head = (al->ring_head + (size_t)n) % al->ring_size;
			al->ring_fill -= (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return 0;
		end_stream(al);
		return -ENODEV;
	}
	return 0;
}

/* frames the application may read (capture) */
static snd_pcm_uframes_t capture_avail(struct audioloop *al)
{
	fill_ring(al);
	snd_pcm_uframes_t avail = al->ring_fill / al->frame;
	if (avail == 0 && al->eof && !al->gone) {
		if (!al->padded) {
			/* complete the period the application is in the middle of */
			snd_pcm_uframes_t ps = al->io.period_size ? al->io.period_size : 1;
			al->pad = (ps - al->io.appl_ptr % ps) % ps;
			al->padded = 1;
		}
		avail = al->pad;
		if (avail == 0)
			end_stream(al);
	}
	return avail;
}

/* ------------------------------------------------------------- callbacks */

static int al_start(snd_pcm_ioplug_t *io)
{
	struct audioloop *al = io->private_data;
	return ensure_open(al);
}

static int al_stop(snd_pcm_ioplug_t *io)
{
	struct audioloop *al = io->private_data;
	if (io->stream == SND_PCM_STREAM_PLAYBACK && !al->shut)
		al->ring_head = al->ring_fill = 0; /* drop: what was not sent is dropped */
	return 0;
}

static snd_pcm_sframes_t al_pointer(snd_pcm_ioplug_t *io)
{
	struct audioloop *al = io->private_data;
	if (check_start(al) < 0 && io->stream == SND_PCM_STREAM_PLAYBACK)
		return (snd_pcm_sframes_t)(io->appl_ptr % al->boundary);
	if (io->stream == SND_PCM_STREAM_CAPTURE) {
		snd_pcm_uframes_t avail = capture_avail(al);
		if (avail > io->buffer_size)
			avail = io->buffer_size;
		return (snd_pcm_sframes_t)((io->appl_ptr + avail) % al->boundary);
	}
	flush_ring(al);
	/* hw = what left the ring */
	snd_pcm_uframes_t queued = al->ring_fill / al->frame + (al->ring_fill % al->frame ? 1 : 0);
	return (snd_pcm_sframes_t)((io->appl_ptr + al->boundary - queued) % al->boundary);
}

/* [app] blocks until START (blocking handles) or says -EAGAIN (non-blocking) */
static int wait_start(struct audioloop *al)
{
	for (;;) {
		int s = check_start_ex(al, 1);
		if (s != 0)
			return s < 0 ? s : 0;
		if (take_timeout(al) < 0)
			return -ETIMEDOUT;
		if (al->clock)
			return 0; /* clock 1: nothing waits for a client */
		if (al->io.nonblock)
			return -EAGAIN;
		int r = wait_fd(al->fd, POLLIN, -1, NULL);
		if (r < 0)
			return r;
	}
}

static snd_pcm_sframes_t al_transfer(snd_pcm_ioplug_t *io, const snd_pcm_channel_area_t *areas,
				     snd_pcm_uframes_t offset, snd_pcm_uframes_t size)
{
	struct audioloop *al = io->private_data;
	int err = ensure_open(al);
	if (err < 0)
		return err;
	unsigned char *buf = (unsigned char *)areas[0].addr + areas[0].first / 8 + offset * (areas[0].step / 8);
	size_t want = size * al->frame;

	if (io->stream == SND_PCM_STREAM_CAPTURE) {
		size_t done = 0;
		size_t real = al->ring_fill - al->ring_fill % al->frame;
		if (real > want)
			real = want;
		while (done < real) {
			size_t len = real - done;
			if (len > al->ring_size - al->ring_head)
				len = al->ring_size - al->ring_head;
			memcpy(buf + done, al->ring + al->ring_head, len);
			al->ring_head = (al->ring_head + len) % al->ring_size;
			al->ring_fill -= len;
			done += len;
		}
		snd_pcm_uframes_t frames = done / al->frame;
		if (frames < size && al->eof && al->padded && al->pad > 0) {
			snd_pcm_uframes_t s = size - frames;
			if (s > al->pad)
				s = al->pad;
			memset(buf + done, al->silence, s * al->frame);
			al->pad -= s;
			frames += s;
		}
		return (snd_pcm_sframes_t)frames;
	}

	/* playback: the first write waits for a client */
	err = wait_start(al);
	if (err < 0)
		return err;
	err = flush_ring(al);
	if (err < 0)
		return err;
	size_t room = al->ring_size - al->ring_fill;
	room -= room % al->frame;
	if (want > room)
		want = room;
	size_t done = 0;
	while (done < want) {
		size_t tail = (al->ring_head + al->ring_fill) % al->ring_size;
		size_t len = want - done;
		if (len > al->ring_size - tail)
			len = al->ring_size - tail;
		memcpy(al->ring + tail, buf + done, len);
		al->ring_fill += len;
		done += len;
	}
	flush_ring(al);
	if (done == 0)
		return io->nonblock ? -EAGAIN : 0;
	return (snd_pcm_sframes_t)(done / al->frame);
}

static int al_poll_descriptors_count(snd_pcm_ioplug_t *io)
{
	(void)io;
	return 1;
}

static int al_poll_descriptors(snd_pcm_ioplug_t *io, struct pollfd *pfd, unsigned int space)
{
	struct audioloop *al = io->private_data;
	if (space < 1)
		return 0;
	int err = ensure_open(al);
	if (err < 0)
		return err;
	pfd->fd = al->fd;
	pfd->events = POLLIN;
	/* playback: writable only matters once a client has started (clock 1: at once) */
	if (io->stream == SND_PCM_STREAM_PLAYBACK && (al->started || al->clock) && !al->gone)
		pfd->events |= POLLOUT;
	pfd->revents = 0;
	return 1;
}

static int al_poll_revents(snd_pcm_ioplug_t *io, struct pollfd *pfd, unsigned int nfds, unsigned short *revents)
{
	struct audioloop *al = io->private_data;
	(void)nfds;
	*revents = 0;
	if (pfd->revents & POLLNVAL) {
		*revents = POLLERR;
		return 0;
	}
	check_start_ex(al, 1);
	if (al->gone) {
		/* an error, not only POLLERR: programs that poll themselves
		 * (PortAudio) take POLLERR for an xrun and poll again */
		*revents = POLLERR;
		return -ENODEV;
	}
	if (!al->started && (!al->clock || al->timed_out))
		return take_timeout(al); /* wait MS: -ETIMEDOUT; else the START line is not complete yet */
	if (io->stream == SND_PCM_STREAM_CAPTURE) {
		snd_pcm_uframes_t avail = capture_avail(al);
		if (al->gone) {
			*revents = POLLERR;
			return -ENODEV;
		}
		if (avail >= al->avail_min || avail >= io->buffer_size || (al->eof && avail > 0))
			*revents = POLLIN;
		return 0;
	}
	if (flush_ring(al) < 0) {
		*revents = POLLERR;
		return -ENODEV;
	}
	size_t room = (al->ring_size - al->ring_fill) / al->frame;
	if (room >= al->avail_min || room >= io->buffer_size)
		*revents = POLLOUT;
	return 0;
}

static int al_delay(snd_pcm_ioplug_t *io, snd_pcm_sframes_t *delayp)
{
	struct audioloop *al = io->private_data;
	int q = 0;
	if (io->stream == SND_PCM_STREAM_CAPTURE) {
		capture_avail(al);
		if (al->fd >= 0 && ioctl(al->fd, SIOCINQ, &q) < 0)
			q = 0;
		*delayp = (snd_pcm_sframes_t)((al->ring_fill + (size_t)q) / al->frame);
	} else {
		flush_ring(al);
		if (al->fd >= 0 && ioctl(al->fd, SIOCOUTQ, &q) < 0)
			q = 0;
		*delayp = (snd_pcm_sframes_t)((al->ring_fill + (size_t)q) / al->frame);
	}
	return al->gone ? -ENODEV : 0;
}

static int al_drain(snd_pcm_ioplug_t *io)
{
	struct audioloop *al = io->private_data;
	if (io->stream != SND_PCM_STREAM_PLAYBACK || al->fd < 0)
		return 0;
	if (io->nonblock && ((!al->started && !al->clock) || al->ring_fill > 0))
		return -EAGAIN;
	int err = wait_start(al);
	if (err < 0)
		return err;
	while (al->ring_fill > 0) {
		if (flush_ring(al) < 0)
			return -ENODEV;
		if (al->ring_fill > 0 && wait_fd(al->fd, POLLOUT | POLLIN, -1, NULL) < 0)
			return -EIO;
	}
	/* EOF to the daemon: it plays out what it holds, ends the client streams, then closes */
	shutdown(al->fd, SHUT_WR);
	al->shut = 1;
	for (;;) {
		char b[256];
		ssize_t n = recv(al->fd, b, sizeof(b), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			break;
		if (n > 0)
			continue; /* a RESET line: the client went away meanwhile */
		if (wait_fd(al->fd, POLLIN, -1, NULL) < 0)
			break;
	}
	disconnect(al);
	return 0;
}

static int al_prepare(snd_pcm_ioplug_t *io)
{
	struct audioloop *al = io->private_data;
	if (al->gone)
		return -ENODEV; /* the end of the stream is final, like an unplugged card */
	if (al->fd >= 0) {
		if (io->stream == SND_PCM_STREAM_PLAYBACK)
			al->ring_head = al->ring_fill = 0;
	}
	return 0;
}

static int al_hw_params(snd_pcm_ioplug_t *io, snd_pcm_hw_params_t *params)
{
	struct audioloop *al = io->private_data;
	(void)params;
	const char *fmt = NULL;
	unsigned int bytes = 0;
	for (size_t i = 0; i < N_FORMATS; i++)
		if (formats[i].alsa == io->format) {
			fmt = formats[i].name;
			bytes = formats[i].bytes;
			al->silence = formats[i].silence;
		}
	if (!fmt) {
		SNDERR("audioloop:%d: format %s is not one of U8, S16_LE, S24_3LE, S32_LE, FLOAT_LE", al->loop,
		       snd_pcm_format_name(io->format));
		return -EINVAL;
	}
	/* new parameters for a loop already open: close it; the next use opens it again */
	if (al->fd >= 0 && (al->fmt != fmt || al->rate != io->rate || al->channels != io->channels))
		disconnect(al);
	al->fmt = fmt;
	al->rate = io->rate;
	al->channels = io->channels;
	al->frame = bytes * io->channels;
	size_t size = io->buffer_size * al->frame;
	if (size != al->ring_size) {
		free(al->ring);
		al->ring = malloc(size);
		if (!al->ring) {
			al->ring_size = 0;
			return -ENOMEM;
		}
		al->ring_size = size;
		al->ring_head = al->ring_fill = 0;
	}
	/* as alsa-lib computes it, until sw_params tells */
	al->boundary = io->buffer_size;
	while (al->boundary * 2 <= LONG_MAX - io->buffer_size)
		al->boundary *= 2;
	al->avail_min = io->period_size;
	return 0;
}

static int al_sw_params(snd_pcm_ioplug_t *io, snd_pcm_sw_params_t *params)
{
	struct audioloop *al = io->private_data;
	snd_pcm_uframes_t b = 0, m = 0;
	if (snd_pcm_sw_params_get_boundary(params, &b) == 0 && b > 0)
		al->boundary = b;
	if (snd_pcm_sw_params_get_avail_min(params, &m) == 0)
		al->avail_min = m ? m : 1;
	(void)io;
	return 0;
}

static int al_close(snd_pcm_ioplug_t *io)
{
	struct audioloop *al = io->private_data;
	disconnect(al);
	free(al->ring);
	free(al);
	return 0;
}

static void al_dump(snd_pcm_ioplug_t *io, snd_output_t *out)
{
	struct audioloop *al = io->private_data;
	snd_output_printf(out, "audioloop server end of loop %d (%s%s, %s)\n", al->loop,
			  io->stream == SND_PCM_STREAM_CAPTURE ? "mode=read" : "mode=write", al->clock ? " clock=1" : "", al->path);
}

static const snd_pcm_ioplug_callback_t callbacks = {
	.start = al_start,
	.stop = al_stop,
	.pointer = al_pointer,
	.transfer = al_transfer,
	.close = al_close,
	.hw_params = al_hw_params,
	.sw_params = al_sw_params,
	.prepare = al_prepare,
	.drain = al_drain,
	.poll_descriptors_count = al_poll_descriptors_count,
	.poll_descriptors = al_poll_descriptors,
	.poll_revents = al_poll_revents,
	.delay = al_delay,
	.dump = al_dump,
};

static int set_constraints(snd_pcm_ioplug_t *io)
{
	static const unsigned int access[] = { SND_PCM_ACCESS_RW_INTERLEAVED, SND_PCM_ACCESS_MMAP_INTERLEAVED };
	unsigned int fmts[N_FORMATS];
	for (size_t i = 0; i < N_FORMATS; i++)
		fmts[i] = (unsigned int)formats[i].alsa;
	int err;
	if ((err = snd_pcm_ioplug_set_param_list(io, SND_PCM_IOPLUG_HW_ACCESS, 2, access)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_list(io, SND_PCM_IOPLUG_HW_FORMAT, N_FORMATS, fmts)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_CHANNELS, 1, 8)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_RATE, 8000, 192000)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_PERIOD_BYTES, 64, 1 << 21)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_BUFFER_BYTES, 256, 1 << 23)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_PERIODS, 2, 1024)) < 0)
		return err;
	return 0;
}

static void default_dir(char *out, size_t cap)
{
	const char *rt = getenv("XDG_RUNTIME_DIR");
	if (rt && *rt)
		snprintf(out, cap, "%s/audioloop", rt);
	else
		snprintf(out, cap, "/tmp/audioloop-%u", (unsigned)getuid());
}

SND_PCM_PLUGIN_DEFINE_FUNC(audioloop)
{
	(void)root;
	long loop = 0;
	int wait_ms = 0, clock = 0;
	const char *dir = NULL;
	snd_config_iterator_t i, next;
	snd_config_for_each(i, next, conf) {
		snd_config_t *n = snd_config_iterator_entry(i);
		const char *id;
		if (snd_config_get_id(n, &id) < 0)
			continue;
		if (!strcmp(id, "comment") || !strcmp(id, "type") || !strcmp(id, "hint"))
			continue;
		if (!strcmp(id, "loop")) {
			const char *s;
			if (snd_config_get_integer(n, &loop) < 0) {
				char *end;
				if (snd_config_get_string(n, &s) < 0 || !*s || (loop = strtol(s, &end, 10), *end)) {
					SNDERR("audioloop: loop must be a number 0-15");
					return -EINVAL;
				}
			}
			continue;
		}
		if (!strcmp(id, "socket_dir")) {
			if (snd_config_get_string(n, &dir) < 0) {
				SNDERR("audioloop: socket_dir must be a string");
				return -EINVAL;
			}
			continue;
		}
		if (!strcmp(id, "wait")) {
			long v;
			const char *str;
			char *end;
			if (snd_config_get_integer(n, &v) < 0 &&
			    (snd_config_get_string(n, &str) < 0 || !*str || (v = strtol(str, &end, 10), *end))) {
				SNDERR("audioloop: wait must be a number of milliseconds (0: forever)");
				return -EINVAL;
			}
			if (v < 0 || v > 86400000) {
				SNDERR("audioloop: wait must be 0 (forever) or 1-86400000 ms, got %ld", v);
				return -EINVAL;
			}
			wait_ms = (int)v;
			continue;
		}
		if (!strcmp(id, "clock")) {
			long v;
			const char *str;
			char *end;
			if (snd_config_get_integer(n, &v) < 0 &&
			    (snd_config_get_string(n, &str) < 0 || !*str || (v = strtol(str, &end, 10), *end)))
				v = -1;
			if (v != 0 && v != 1) {
				SNDERR("audioloop: clock must be 0 (wait for a client) or 1 (silence / consume until a client starts)");
				return -EINVAL;
			}
			clock = (int)v;
			continue;
		}
		SNDERR("audioloop: unknown argument %s (known: loop, socket_dir, wait, clock)", id);
		return -EINVAL;
	}
	if (loop < 0 || loop > 15) {
		SNDERR("audioloop: loop must be 0-15, got %ld", loop);
		return -EINVAL;
	}
	struct audioloop *al = calloc(1, sizeof(*al));
	if (!al)
		return -ENOMEM;
	al->fd = -1;
	al->loop = (int)loop;
	al->wait_ms = wait_ms;
	al->clock = clock;
	if (dir && *dir)
		snprintf(al->dir, sizeof(al->dir), "%s", dir);
	else
		default_dir(al->dir, sizeof(al->dir));
	if ((size_t)snprintf(al->path, sizeof(al->path), "%s/audioloop%d", al->dir, al->loop) >= sizeof(al->path)) {
		SNDERR("audioloop: socket path too long: %s/audioloop%d", al->dir, al->loop);
		free(al);
		return -ENAMETOOLONG;
	}
	/* no daemon, or a loop it does not serve: say so now, not at the first read */
	struct stat st;
	if (stat(al->path, &st) < 0 || !S_ISSOCK(st.st_mode)) {
		char control[PATH_MAX + 16];
		snprintf(control, sizeof(control), "%s/control", al->dir);
		int daemon = stat(control, &st) == 0 && S_ISSOCK(st.st_mode);
		if (daemon)
			SNDERR("audioloop:%d: no loop instance %d: the daemon in %s does not serve it (see audioloop_instances)",
			       al->loop, al->loop, al->dir);
		else
			SNDERR("audioloop:%d: no audioloop daemon at %s (start one with \"audioloop daemon\")", al->loop,
			       al->path);
		free(al);
		return daemon ? -ENODEV : -ENOENT;
	}

	al->io.version = SND_PCM_IOPLUG_VERSION;
	al->io.name = "audioloop server end";
	al->io.flags = SND_PCM_IOPLUG_FLAG_BOUNDARY_WA;
	al->io.poll_fd = -1;
	al->io.poll_events = 0;
	al->io.mmap_rw = 0;
	al->io.callback = &callbacks;
	al->io.private_data = al;
	int err = snd_pcm_ioplug_create(&al->io, name, stream, mode);
	if (err < 0) {
		free(al);
		return err;
	}
	err = set_constraints(&al->io);
	if (err < 0) {
		snd_pcm_ioplug_delete(&al->io);
		return err;
	}
	*pcmp = al->io.pcm;
	return 0;
}

SND_PCM_PLUGIN_SYMBOL(audioloop);
