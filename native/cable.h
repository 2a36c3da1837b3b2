/*
 * The cable (aloop.c's "cable"): what joins a server end to a client end,
 * backend-neutral.  It owns
 *   - the ring between the backend's realtime callback and the server end;
 *   - the counters (frames, xruns, cycles) and the peak meters;
 *   - optionally the server end itself: a socket fd handed over by JS after
 *     the OPEN line ("fd mode").  Then the I/O thread ([io], host.h) moves
 *     PCM between ring and fd with non-blocking I/O and backpressure, and
 *     sends the protocol lines JS asks for (OK/START/RESET) in order, before
 *     or after PCM as the protocol wants; JS hears only of data events
 *     (first data, server EOF, drained, finished, error).
 * Without an fd ("JS mode") JS reads/writes the ring itself (tests, tools).
 *
 * Direction: a capture cable (is_sink) takes what clients play (the
 * backend's sink node) to a reading server; a playback cable takes what a
 * writing server sends to recording clients (the backend's source node).
 *
 * Threads: every field and function says where it runs. [rt] only touches
 * the ring, atomics, and at most one eventfd write/uv_async_send per cycle.
 */
#ifndef AL_CABLE_H
#define AL_CABLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "format.h"
#include "host.h"
#include "list.h"
#include "ring.h"

#define AL_MAX_CHANNELS 8
#define AL_CTL_BYTES 2048

enum al_cable_event {
	AL_CABLE_FIRST = 1,  /* the first PCM byte crossed the fd after START */
	AL_CABLE_EOF,        /* the server sent EOF (a writing server: no more data) */
	AL_CABLE_DRAINED,    /* playback after EOF: the ring is empty (all went to the clients' graph) */
	AL_CABLE_FINISHED,   /* finish() done: everything asked for was sent, the fd's write side is shut */
	AL_CABLE_ERROR,      /* the fd failed: b = -errno (EPIPE, ECONNRESET: the server is gone) */
};

struct al_cable_params {
	bool is_sink;
	const struct al_format *fmt;
	uint32_t rate, channels;
	uint32_t ring_bytes;         /* rounded up to a power of two, >= 1024 */
	uint32_t wake_bytes;         /* 0: ring/8 */
};

struct al_cable {
	struct al_host *host;
	struct al_target target;     /* [js] cable events go here (if it has a callback) */
	int refs;                    /* [js] the handle and an attached stream */
	bool is_sink;
	const struct al_format *fmt;
	uint32_t rate, channels, stride;
	struct ring ring;
	uint32_t wake_bytes;
	bool has_stream;             /* [js] a backend stream feeds/drains the ring now */

	/* written by [rt], read anywhere */
	_Atomic int wake;            /* JS mode: data wake-up pending for JS */
	_Atomic uint64_t frames_rt;  /* frames moved by the rt callback */
	_Atomic uint64_t xruns;      /* overruns (capture) / underruns (playback) */
	_Atomic uint64_t xrun_bytes; /* bytes dropped (capture) or silence inserted (playback) */
	_Atomic uint64_t cycles;     /* rt callbacks */
	_Atomic uint32_t last_quantum;
	_Atomic int primed;          /* playback: data was written since the last underrun */
	_Atomic int want_space;      /* playback: the writer waits for free space */
	_Atomic int drained;         /* playback after EOF: [rt] saw the ring empty */
	uint32_t ready_cycles;       /* [rt] only: playback, fd mode: consecutive cycles with a client's link flowing (capped) */
	_Atomic int flow_seen;       /* playback, fd mode: [rt] ran a cycle with a client's link flowing (set once, [io] kicked), read by [io] and [js, io_lock] */
	uint32_t settle_cycles;      /* set by the backend before its stream runs ([js, locked]), read by [rt]: of those, how many still play silence */
	/* set by the backend ([loop]), read by [rt] */
	_Atomic uint32_t links;      /* client links to the node */
	_Atomic uint32_t active_links; /* those of them active, the client's node running: its data flows */
	/* set by [js], read by [rt] */
	_Atomic uint64_t wake_at_frames; /* JS mode: one data wake-up once frames_rt reaches it (0: off) */
	_Atomic int keep_silence;    /* capture: keep the silence the node hears while no client's data flows (clock=1 after START) */

	/* set by [js] (under io_lock), read by [rt] and [io] */
	_Atomic int fd_mode;         /* an fd is attached: [rt] kicks [io], not JS */
	_Atomic int gate;            /* playback: [rt] may take from the ring (else plays silence) */
	_Atomic int started;         /* capture: PCM may go out on the fd */
	_Atomic int eof;             /* playback: the server's EOF was read */
	_Atomic int kick;            /* [rt]/[js] -> [io]: work pending */

	/* the fd side: [io_lock] */
	struct al_list io_link;      /* in host->io_cables while fd >= 0 */
	int fd;
	uint32_t ep_events;          /* the epoll mask registered, 0 = not registered */
	uint8_t *pending;            /* playback: bytes after the OPEN line, and the read-ahead before start() (not in the ring) */
	uint32_t pending_len, pending_off, pending_cap;
	char ctl[AL_CTL_BYTES];      /* protocol lines to send, in order, before more PCM */
	uint32_t ctl_len, ctl_off;
	char start_line[128];        /* playback: START, held until [rt] saw a cycle flowing to a client (flow_seen), or a later line */
	bool start_held;
	uint32_t hold;               /* playback before the gate opens: read ahead (into pending) at most this */
	uint64_t consume_debt;       /* playback before the gate opens (clock=1): bytes al_cable_consume still discards from what the fd has now */
	uint64_t consumed;           /* bytes al_cable_consume discarded (never in the ring) */
	bool finishing, drain, finished, failed, eof_seen, first_sent, drained_sent;
	bool out_blocked, in_paused;
	uint64_t fd_bytes;           /* PCM bytes moved over the fd */
	uint32_t meter_pos;          /* ring position up to which the meter has seen the data */
	float peak[AL_MAX_CHANNELS];
	uint64_t peak_at[AL_MAX_CHANNELS]; /* ns, CLOCK_MONOTONIC */
	uint64_t meter_bytes;        /* JS mode too: bytes seen by the meter */
};

struct al_cable_stats {
	uint32_t fill, size;
	uint64_t frames, xruns, xrun_bytes, cycles;
	uint32_t quantum, links, active_links;
	uint64_t fd_bytes;
	uint32_t queued;             /* bytes held outside the ring (lines, bytes after OPEN) */
	uint64_t consumed;           /* bytes discarded by al_cable_consume */
	bool fd_open, eof, finished, failed;
	double levels[AL_MAX_CHANNELS]; /* dBFS, held 300 ms, then falling 20 dB/s */
};

/* [js] a new cable with one reference; NULL on ENOMEM */
struct al_cable *al_cable_new(struct al_host *h, const struct al_cable_params *p);
void al_cable_ref(struct al_cable *c);
/* [js] the last reference closes the fd and frees the cable */
void al_cable_unref(struct al_cable *c);

/* [rt] capture: takes n bytes (whole frames) played by clients; returns false
 * when they were not kept (silence while no client is linked) */
bool al_cable_rt_push(struct al_cable *c, const uint8_t *src, uint32_t n, bool *dropped);
/* [js] capture: keep (on) or drop (off, the default) the silence the node
 * hears while no client's data flows: a server that asked for the loop's
 * clock (clock=1) reads in real time also between clients and while every
 * client is paused */
void al_cable_keep_silence(struct al_cable *c, bool on);
/* [rt] capture: end of a cycle that pushed `frames` */
void al_cable_rt_push_done(struct al_cable *c, uint32_t frames, bool dropped);
/* [rt] playback: fills dst with n bytes (whole frames): ring data, then silence */
void al_cable_rt_pull(struct al_cable *c, uint8_t *dst, uint32_t n);

/* [js] JS mode: one data wake-up once the node has moved `frames` more
 * frames (silence included: a play-out waits for a client's buffer); 0 cancels */
void al_cable_wake_after(struct al_cable *c, uint64_t frames);

/* [js] JS mode: copy whole frames out of (capture) / into (playback) the ring */
uint32_t al_cable_read(struct al_cable *c, uint8_t *dst, uint32_t n);
uint32_t al_cable_write(struct al_cable *c, const uint8_t *src, uint32_t n);

/* [js] fd mode: the cable takes a dup of fd; `rest` are bytes read past the
 * OPEN line (kept for a playback cable); `hold` bounds the read-ahead before
 * start(). 0 or -errno (EBUSY: already has an fd) */
int al_cable_plug(struct al_cable *c, int fd, const uint8_t *rest, uint32_t rest_len, uint32_t hold);
/* [js] queues a protocol line (sent before any PCM that follows) */
int al_cable_line(struct al_cable *c, const char *line);
/* [js] a client started: queues `line` (START), then PCM flows. A playback
 * cable sends it only once [rt] has run a cycle with the client's link
 * flowing (at once if it has): a writer that waits for START then has its
 * first data in the ring by the first cycle that takes data, every time
 * (sent earlier, the writer's first data sometimes missed that cycle,
 * sometimes not, and the stream carried that quantum for its life) */
int al_cable_start(struct al_cable *c, const char *line);
/* [js] the end: capture with drain delivers the ring first; then `line`
 * (RESET, may be NULL), then shutdown(SHUT_WR) and AL_CABLE_FINISHED */
int al_cable_finish(struct al_cable *c, const char *line, bool drain);
/* [js] playback before start() (clock=1: the loop's clock runs without a
 * client): discards up to `bytes` (whole frames) of what the server sent,
 * oldest first: the held read-ahead now, the rest on [io] from what the fd
 * has at once. Never more: what the server has not sent yet is not owed (a
 * writer behind the clock underruns it). Returns the bytes discarded now;
 * stats' `consumed` counts all. 0 after start(); -EBADF without an fd,
 * -EINVAL on a capture cable */
int64_t al_cable_consume(struct al_cable *c, uint32_t bytes);
/* [js] the server's end, now (poll, no wait): 0 open, 1 it shut its write
 * side (EOF), 2 it closed or failed; -EBADF without an fd */
int al_cable_peer(struct al_cable *c);
/* [js] idempotent: closes the fd (the server end) */
void al_cable_close_fd(struct al_cable *c);
/* [js] */
void al_cable_stats(struct al_cable *c, struct al_cable_stats *st);

/* [io] the I/O thread; [js] stops it (environment teardown) */
void *al_io_main(void *arg);
void al_io_stop(struct al_host *h);

/* cores of a host (backend.c): [js] */
void al_cores_init(struct al_host *h);
void al_cores_close_all(struct al_host *h);

#endif
