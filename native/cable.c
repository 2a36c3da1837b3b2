#define _GNU_SOURCE /* POLLRDHUP */
/* The cable: ring, counters, meters and the fd data plane (see cable.h). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "cable.h"

#define METER_HOLD_NS 300000000ull
#define METER_FALL_DB_PER_S 20.0
#define SILENCE_DB -120.0

struct al_cable *al_cable_new(struct al_host *h, const struct al_cable_params *p)
{
	struct al_cable *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	uint32_t size = 1024;
	while (size < p->ring_bytes)
		size <<= 1;
	c->ring.data = malloc(size);
	if (c->ring.data == NULL) {
		free(c);
		return NULL;
	}
	c->ring.size = size;
	c->ring.mask = size - 1;
	c->host = h;
	c->refs = 1;
	c->is_sink = p->is_sink;
	c->fmt = p->fmt;
	c->rate = p->rate;
	c->channels = p->channels;
	c->stride = p->fmt->bytes * p->channels;
	c->wake_bytes = p->wake_bytes ? RING_MIN(p->wake_bytes, size) : size / 8;
	c->fd = -1;
	atomic_store(&c->gate, 1);
	al_list_init(&c->io_link);
	al_list_init(&c->target.link);
	al_host_ref(h);
	return c;
}

void al_cable_ref(struct al_cable *c)
{
	c->refs++;
}

void al_cable_unref(struct al_cable *c)
{
	if (--c->refs > 0)
		return;
	al_cable_close_fd(c);
	al_target_remove(c->host, &c->target);
	struct al_host *h = c->host;
	free(c->pending);
	free(c->ring.data);
	free(c);
	al_host_unref(h);
}

/* ------------------------------------------------------------------------ */
/* [rt]                                                                      */

static bool is_silence(const uint8_t *p, uint32_t n, uint8_t silence)
{
	for (uint32_t i = 0; i < n; i++)
		if (p[i] != silence)
			return false;
	return true;
}

static void kick_io(struct al_cable *c)
{
	if (!atomic_exchange_explicit(&c->kick, 1, memory_order_acq_rel))
		al_host_kick_io(c->host);
}

bool al_cable_rt_push(struct al_cable *c, const uint8_t *src, uint32_t n, bool *dropped)
{
	/* The node always runs; with no client linked, or every linked client
	 * paused (corked), it only hears silence, which is not kept. Anything
	 * that is not silence is kept even before the link state is seen. */
	if (atomic_load_explicit(&c->active_links, memory_order_acquire) == 0 &&
	    !atomic_load_explicit(&c->keep_silence, memory_order_relaxed) && is_silence(src, n, c->fmt->silence))
		return false;
	uint32_t done = ring_write(&c->ring, src, n);
	if (done < n) {
		*dropped = true;
		atomic_fetch_add_explicit(&c->xrun_bytes, n - done, memory_order_relaxed);
	}
	return true;
}

void al_cable_keep_silence(struct al_cable *c, bool on)
{
	atomic_store_explicit(&c->keep_silence, on ? 1 : 0, memory_order_relaxed);
}

/* [rt] the wake-up al_cable_wake_after asked for, once due */
static void wake_after_frames(struct al_cable *c)
{
	uint64_t at = atomic_load_explicit(&c->wake_at_frames, memory_order_acquire);
	if (at == 0 || atomic_load_explicit(&c->frames_rt, memory_order_relaxed) < at)
		return;
	if (atomic_compare_exchange_strong_explicit(&c->wake_at_frames, &at, 0, memory_order_acq_rel, memory_order_relaxed)) {
		atomic_store_explicit(&c->wake, 1, memory_order_release);
		al_host_wake_js(c->host);
	}
}

void al_cable_wake_after(struct al_cable *c, uint64_t frames)
{
	atomic_store_explicit(&c->wake_at_frames, frames ? atomic_load(&c->frames_rt) + frames : 0, memory_order_release);
}

void al_cable_rt_push_done(struct al_cable *c, uint32_t frames, bool dropped)
{
	if (dropped)
		atomic_fetch_add_explicit(&c->xruns, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->frames_rt, frames, memory_order_relaxed);
	atomic_store_explicit(&c->last_quantum, frames, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->cycles, 1, memory_order_relaxed);
	wake_after_frames(c);
	uint32_t fill = ring_fill(&c->ring);
	if (atomic_load_explicit(&c->fd_mode, memory_order_acquire)) {
		if (fill > 0 && atomic_load_explicit(&c->started, memory_order_acquire) && (fill >= c->wake_bytes || dropped))
			kick_io(c);
	} else if (fill >= c->wake_bytes || dropped) {
		atomic_store_explicit(&c->wake, 1, memory_order_release);
		al_host_wake_js(c->host);
	}
}

void al_cable_rt_pull(struct al_cable *c, uint8_t *dst, uint32_t n)
{
	uint32_t done = 0;
	bool fd_mode = atomic_load_explicit(&c->fd_mode, memory_order_acquire);
	/* fd mode: data goes out only while a client's link is active and the
	 * client's node runs (active_links counts only those, backend.c): the
	 * node may run cycles before its link to the client carries them (seen:
	 * the first quantum after START lost by parecord/pw-record; a recorder
	 * slow to take its Start in a running graph lost all of that time) */
	bool flowing = !fd_mode || atomic_load_explicit(&c->active_links, memory_order_acquire) > 0;
	/* ... and not in the first settle_cycles cycles the link is seen
	 * flowing: those play silence (the backend's choice, pw-backend.c) */
	c->ready_cycles = flowing ? RING_MIN(c->ready_cycles + 1, c->settle_cycles + 1) : 0;
	if (fd_mode && flowing && !atomic_load_explicit(&c->flow_seen, memory_order_relaxed)) {
		/* once: [io] sends a held START now (al_cable_start) */
		atomic_store_explicit(&c->flow_seen, 1, memory_order_release);
		kick_io(c);
	}
	if (atomic_load_explicit(&c->gate, memory_order_acquire) && flowing && (!fd_mode || c->ready_cycles > c->settle_cycles)) {
		/* whole frames only: a writer may have put part of one in */
		uint32_t avail = ring_fill(&c->ring);
		avail -= avail % c->stride;
		done = ring_read(&c->ring, dst, RING_MIN(n, avail));
		if (done < n && atomic_exchange_explicit(&c->primed, 0, memory_order_acq_rel)) {
			/* an underrun counts only once data was written; once per gap */
			atomic_fetch_add_explicit(&c->xruns, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&c->xrun_bytes, n - done, memory_order_relaxed);
		}
	}
	if (done < n)
		memset(dst + done, c->fmt->silence, n - done);
	atomic_fetch_add_explicit(&c->frames_rt, n / c->stride, memory_order_relaxed);
	atomic_store_explicit(&c->last_quantum, n / c->stride, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->cycles, 1, memory_order_relaxed);
	uint32_t fill = ring_fill(&c->ring);
	if (atomic_load_explicit(&c->want_space, memory_order_acquire) && c->ring.size - fill >= c->wake_bytes &&
	    atomic_exchange_explicit(&c->want_space, 0, memory_order_acq_rel)) {
		if (fd_mode) {
			kick_io(c);
		} else {
			atomic_store_explicit(&c->wake, 1, memory_order_release);
			al_host_wake_js(c->host);
		}
	}
	if (fd_mode && fill < c->stride && atomic_load_explicit(&c->eof, memory_order_acquire) &&
	    !atomic_exchange_explicit(&c->drained, 1, memory_order_acq_rel))
		kick_io(c);
	wake_after_frames(c);
}

/* ------------------------------------------------------------------------ */
/* peak meter ([js] in JS mode, [io] in fd mode; stats read under io_lock)   */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double meter_current(const struct al_cable *c, uint32_t ch, uint64_t t)
{
	double falling = t > c->peak_at[ch] + METER_HOLD_NS ? (double)(t - c->peak_at[ch] - METER_HOLD_NS) / 1e9 : 0;
	return c->peak[ch] * pow(10.0, -METER_FALL_DB_PER_S * falling / 20.0);
}

/* peak of `frames` whole frames at p, per channel, merged into the meter */
static void meter_block(struct al_cable *c, const uint8_t *p, uint32_t frames, uint64_t t)
{
	uint32_t bytes = c->fmt->bytes, fb = c->stride;
	for (uint32_t ch = 0; ch < c->channels; ch++) {
		const uint8_t *s = p + ch * bytes;
		double peak = 0;
		switch (c->fmt->sample) {
		case AL_U8: {
			int m = 0;
			for (uint32_t i = 0; i < frames; i++, s += fb) {
				int v = abs((int)s[0] - 128);
				if (v > m)
					m = v;
			}
			peak = m / 128.0;
			break;
		}
		case AL_S16LE: {
			int m = 0;
			for (uint32_t i = 0; i < frames; i++, s += fb) {
				int v = abs((int)(int16_t)(s[0] | (s[1] << 8)));
				if (v > m)
					m = v;
			}
			peak = m / 32768.0;
			break;
		}
		case AL_S24LE: {
			int32_t m = 0;
			for (uint32_t i = 0; i < frames; i++, s += fb) {
				int32_t v = (int32_t)((uint32_t)s[0] << 8 | (uint32_t)s[1] << 16 | (uint32_t)s[2] << 24) >> 8;
				if (v < 0)
					v = -v;
				if (v > m)
					m = v;
			}
			peak = m / 8388608.0;
			break;
		}
		case AL_S32LE: {
			int64_t m = 0;
			for (uint32_t i = 0; i < frames; i++, s += fb) {
				int64_t v = (int32_t)((uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 |
						      (uint32_t)s[3] << 24);
				if (v < 0)
					v = -v;
				if (v > m)
					m = v;
			}
			peak = m / 2147483648.0;
			break;
		}
		case AL_F32LE: {
			float m = 0;
			for (uint32_t i = 0; i < frames; i++, s += fb) {
				float v;
				memcpy(&v, s, 4);
				v = fabsf(v);
				if (v > m) /* NaN never wins */
					m = v;
			}
			peak = m;
			break;
		}
		}
		if (peak > 0 && peak >= meter_current(c, ch, t)) {
			c->peak[ch] = (float)peak;
			c->peak_at[ch] = t;
		}
	}
}

/* meters the whole frames of the ring between meter_pos and `upto` */
static void meter_ring(struct al_cable *c, uint32_t upto)
{
	int32_t ahead = (int32_t)(upto - c->meter_pos);
	if (ahead < (int32_t)c->stride)
		return;
	uint32_t frames = (uint32_t)ahead / c->stride;
	uint64_t t = now_ns();
	c->meter_bytes += (uint64_t)frames * c->stride;
	while (frames > 0) {
		uint32_t off = c->meter_pos & c->ring.mask;
		uint32_t contiguous = c->ring.size - off;
		if (contiguous >= c->stride) {
			uint32_t k = RING_MIN(frames, contiguous / c->stride);
			meter_block(c, c->ring.data + off, k, t);
			c->meter_pos += k * c->stride;
			frames -= k;
		} else {
			/* a frame across the end of the ring */
			uint8_t tmp[AL_MAX_CHANNELS * 4];
			memcpy(tmp, c->ring.data + off, contiguous);
			memcpy(tmp + contiguous, c->ring.data, c->stride - contiguous);
			meter_block(c, tmp, 1, t);
			c->meter_pos += c->stride;
			frames--;
		}
	}
}

/* ------------------------------------------------------------------------ */
/* JS mode [js]                                                              */

uint32_t al_cable_read(struct al_cable *c, uint8_t *dst, uint32_t n)
{
	n -= n % c->stride;
	uint32_t rd = atomic_load_explicit(&c->ring.rd, memory_order_relaxed);
	uint32_t avail = ring_fill(&c->ring);
	n = RING_MIN(n, avail - avail % c->stride);
	c->meter_pos = rd;
	pthread_mutex_lock(&c->host->io_lock);
	meter_ring(c, rd + n);
	pthread_mutex_unlock(&c->host->io_lock);
	return ring_read(&c->ring, dst, n);
}

uint32_t al_cable_write(struct al_cable *c, const uint8_t *src, uint32_t n)
{
	/* only whole frames enter the ring, so the rt side never splits one */
	uint32_t space = c->ring.size - ring_fill(&c->ring);
	uint32_t want = n - n % c->stride;
	uint32_t k = RING_MIN(want, space);
	k -= k % c->stride;
	uint32_t wr = atomic_load_explicit(&c->ring.wr, memory_order_relaxed);
	k = ring_write(&c->ring, src, k);
	pthread_mutex_lock(&c->host->io_lock);
	c->meter_pos = wr;
	meter_ring(c, wr + k);
	pthread_mutex_unlock(&c->host->io_lock);
	if (k > 0)
		atomic_store_explicit(&c->primed, 1, memory_order_release);
	if (k < want)
		atomic_store_explicit(&c->want_space, 1, memory_order_release);
	return k;
}

/* ------------------------------------------------------------------------ */
/* fd mode: [js] requests                                                    */

static void post(struct al_cable *c, enum al_cable_event ev, int err)
{
	if (c->target.id != 0)
		al_host_push(c->host, AL_EV_CABLE, c->target.id, ev, err, NULL);
}

static void set_mask(struct al_cable *c, uint32_t want)
{
	if (c->fd < 0 || want == c->ep_events)
		return;
	struct epoll_event e = { .events = want, .data.ptr = c };
	int op = c->ep_events == 0 ? EPOLL_CTL_ADD : want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
	if (epoll_ctl(c->host->epfd, op, c->fd, &e) == 0)
		c->ep_events = want;
}

int al_cable_plug(struct al_cable *c, int fd, const uint8_t *rest, uint32_t rest_len, uint32_t hold)
{
	struct al_host *h = c->host;
	if (c->fd >= 0 || c->finished)
		return -EBUSY;
	int res = al_host_io_start(h);
	if (res < 0)
		return res;
	int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (dup < 0)
		return -errno;
	int fl = fcntl(dup, F_GETFL);
	if (fl < 0 || fcntl(dup, F_SETFL, fl | O_NONBLOCK) < 0) {
		res = -errno;
		close(dup);
		return res;
	}
	uint8_t *copy = NULL;
	uint32_t hold_bytes = RING_MIN(hold ? hold : c->ring.size, c->ring.size), cap = 0;
	if (!c->is_sink) {
		/* the bytes after the OPEN line, and room for the read-ahead before start() */
		cap = rest_len + hold_bytes;
		copy = malloc(cap);
		if (copy == NULL) {
			close(dup);
			return -ENOMEM;
		}
		if (rest_len > 0)
			memcpy(copy, rest, rest_len);
	}
	pthread_mutex_lock(&h->io_lock);
	c->fd = dup;
	c->pending = copy;
	c->pending_len = copy ? rest_len : 0;
	c->pending_off = 0;
	c->pending_cap = cap;
	c->hold = hold_bytes;
	c->meter_pos = c->is_sink ? atomic_load(&c->ring.rd) : atomic_load(&c->ring.wr);
	c->ep_events = 0;
	atomic_store(&c->gate, 0);
	atomic_store(&c->started, 0);
	atomic_store(&c->fd_mode, 1);
	al_list_append(&h->io_cables, &c->io_link);
	set_mask(c, EPOLLIN);
	atomic_store(&c->kick, 1);
	pthread_mutex_unlock(&h->io_lock);
	al_host_kick_io(h);
	return 0;
}

static int queue_line(struct al_cable *c, const char *line)
{
	size_t n = line ? strlen(line) : 0;
	if (n == 0)
		return 0;
	if (c->ctl_off > 0 && c->ctl_off == c->ctl_len)
		c->ctl_off = c->ctl_len = 0;
	if (c->ctl_len + n > sizeof(c->ctl)) {
		memmove(c->ctl, c->ctl + c->ctl_off, c->ctl_len - c->ctl_off);
		c->ctl_len -= c->ctl_off;
		c->ctl_off = 0;
		if (c->ctl_len + n > sizeof(c->ctl))
			return -ENOSPC;
	}
	memcpy(c->ctl + c->ctl_len, line, n);
	c->ctl_len += n;
	return 0;
}

/* [io_lock] a held START goes out before anything queued after it */
static int release_start(struct al_cable *c)
{
	if (!c->start_held)
		return 0;
	c->start_held = false;
	return queue_line(c, c->start_line);
}

static int request(struct al_cable *c, const char *line, int what, bool drain)
{
	struct al_host *h = c->host;
	pthread_mutex_lock(&h->io_lock);
	int res = c->fd < 0 ? -EBADF : c->finishing ? -EPIPE : 0;
	if (res == 0 && what == 1 && !c->is_sink && line != NULL && !atomic_load(&c->flow_seen)) {
		/* START waits for [rt]'s first cycle flowing to a client (al_cable_start) */
		if (strlen(line) >= sizeof(c->start_line) || c->start_held) {
			res = c->start_held ? -EBUSY : -ENOSPC;
		} else {
			snprintf(c->start_line, sizeof(c->start_line), "%s", line);
			c->start_held = true;
		}
	} else if (res == 0) {
		res = release_start(c);
		if (res == 0)
			res = queue_line(c, line);
	}
	if (res == 0 && what == 1) {
		if (c->is_sink) {
			atomic_store(&c->started, 1);
		} else {
			if (ring_fill(&c->ring) > 0 || c->pending_len > c->pending_off)
				atomic_store(&c->primed, 1);
			atomic_store(&c->gate, 1);
		}
	} else if (res == 0 && what == 2) {
		c->finishing = true;
		c->drain = drain;
	}
	if (res == 0)
		atomic_store(&c->kick, 1);
	pthread_mutex_unlock(&h->io_lock);
	if (res == 0)
		al_host_kick_io(h);
	return res;
}

int al_cable_line(struct al_cable *c, const char *line)
{
	return request(c, line, 0, false);
}

int al_cable_start(struct al_cable *c, const char *line)
{
	return request(c, line, 1, false);
}

int al_cable_finish(struct al_cable *c, const char *line, bool drain)
{
	return request(c, line, 2, drain);
}

static bool flush_ctl(struct al_cable *c);

void al_cable_close_fd(struct al_cable *c)
{
	struct al_host *h = c->host;
	pthread_mutex_lock(&h->io_lock);
	if (c->fd >= 0) {
		/* lines asked for go out first (best effort, never blocking): an OK
		 * queued just before the server's EOF was seen, say */
		if (!c->failed && c->ctl_off < c->ctl_len)
			flush_ctl(c);
		set_mask(c, 0);
		close(c->fd);
		c->fd = -1;
		al_list_remove(&c->io_link);
		atomic_store(&c->fd_mode, 0);
		atomic_store(&c->gate, 1);
	}
	free(c->pending);
	c->pending = NULL;
	c->pending_len = c->pending_off = c->pending_cap = 0;
	pthread_mutex_unlock(&h->io_lock);
}

int al_cable_peer(struct al_cable *c)
{
	struct al_host *h = c->host;
	int res = 0;
	pthread_mutex_lock(&h->io_lock);
	if (c->fd < 0) {
		res = -EBADF;
	} else {
		struct pollfd p = { .fd = c->fd, .events = POLLIN | POLLRDHUP };
		if (poll(&p, 1, 0) > 0) {
			if (p.revents & (POLLHUP | POLLERR))
				res = 2;
			else if (p.revents & POLLRDHUP)
				res = 1;
		}
	}
	pthread_mutex_unlock(&h->io_lock);
	return res;
}

/* [io_lock] discards up to `want` whole frames from the front of pending; returns the bytes */
static uint32_t consume_pending(struct al_cable *c, uint64_t want)
{
	uint32_t have = c->pending_len - c->pending_off;
	uint32_t take = (uint32_t)RING_MIN(want, (uint64_t)(have - have % c->stride));
	c->pending_off += take;
	c->consumed += take;
	if (c->pending_off > 0) {
		memmove(c->pending, c->pending + c->pending_off, c->pending_len - c->pending_off);
		c->pending_len -= c->pending_off;
		c->pending_off = 0;
	}
	return take;
}

int64_t al_cable_consume(struct al_cable *c, uint32_t bytes)
{
	struct al_host *h = c->host;
	if (c->is_sink)
		return -EINVAL;
	pthread_mutex_lock(&h->io_lock);
	int64_t res;
	if (c->fd < 0) {
		res = -EBADF;
	} else if (atomic_load(&c->gate) || c->finishing || c->pending == NULL) {
		res = 0;
	} else {
		uint64_t want = bytes - bytes % c->stride;
		res = consume_pending(c, want);
		if (want > (uint64_t)res && !c->eof_seen && !c->failed)
			c->consume_debt += want - (uint64_t)res; /* [io] pays it from what the fd has now */
		atomic_store(&c->kick, 1); /* room in pending again: read on */
	}
	pthread_mutex_unlock(&h->io_lock);
	if (res >= 0 && !c->is_sink)
		al_host_kick_io(h);
	return res;
}

void al_cable_stats(struct al_cable *c, struct al_cable_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->fill = ring_fill(&c->ring);
	st->size = c->ring.size;
	st->frames = atomic_load(&c->frames_rt);
	st->xruns = atomic_load(&c->xruns);
	st->xrun_bytes = atomic_load(&c->xrun_bytes);
	st->cycles = atomic_load(&c->cycles);
	st->quantum = atomic_load(&c->last_quantum);
	st->links = atomic_load(&c->links);
	st->active_links = atomic_load(&c->active_links);
	pthread_mutex_lock(&c->host->io_lock);
	st->fd_bytes = c->fd_bytes;
	st->queued = (c->ctl_len - c->ctl_off) + (c->pending_len - c->pending_off);
	st->consumed = c->consumed;
	st->fd_open = c->fd >= 0;
	st->eof = c->eof_seen;
	st->finished = c->finished;
	st->failed = c->failed;
	uint64_t t = now_ns();
	for (uint32_t ch = 0; ch < c->channels; ch++) {
		double a = meter_current(c, ch, t);
		double db = a > 0 ? 20 * log10(a) : SILENCE_DB;
		st->levels[ch] = db < SILENCE_DB ? SILENCE_DB : db;
	}
	pthread_mutex_unlock(&c->host->io_lock);
}

/* ------------------------------------------------------------------------ */
/* fd mode: the I/O thread [io], io_lock held                                */

static void fail(struct al_cable *c, int err)
{
	if (c->failed)
		return;
	c->failed = true;
	set_mask(c, 0);
	post(c, AL_CABLE_ERROR, -err);
}

/* sends queued lines; false while some are left (blocked or failed) */
static bool flush_ctl(struct al_cable *c)
{
	while (c->ctl_off < c->ctl_len) {
		ssize_t n = send(c->fd, c->ctl + c->ctl_off, c->ctl_len - c->ctl_off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				c->out_blocked = true;
			else
				fail(c, errno);
			return false;
		}
		c->ctl_off += (uint32_t)n;
	}
	c->ctl_off = c->ctl_len = 0;
	return true;
}

static void finish_if_done(struct al_cable *c)
{
	if (!c->finishing || c->finished || c->failed || c->ctl_len > c->ctl_off)
		return;
	if (c->is_sink && c->drain && ring_fill(&c->ring) > 0)
		return;
	shutdown(c->fd, SHUT_WR);
	c->finished = true;
	set_mask(c, 0);
	post(c, AL_CABLE_FINISHED, 0);
}

static void first_data(struct al_cable *c)
{
	if (!c->first_sent) {
		c->first_sent = true;
		post(c, AL_CABLE_FIRST, 0);
	}
}

/* capture: the server sends nothing; reading only sees its EOF or reset */
static void capture_in(struct al_cable *c)
{
	uint8_t scratch[4096];
	for (;;) {
		ssize_t n = recv(c->fd, scratch, sizeof(scratch), MSG_DONTWAIT);
		if (n > 0)
			continue;
		if (n == 0) {
			c->eof_seen = true;
			post(c, AL_CABLE_EOF, 0);
			return;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			fail(c, errno);
		return;
	}
}

/* capture: ring -> fd while the socket takes it */
static void capture_out(struct al_cable *c)
{
	while (!c->failed) {
		struct ring_seg seg;
		uint32_t total = ring_read_segments(&c->ring, UINT32_MAX, &seg);
		if (total == 0)
			return;
		struct iovec iov[2] = { { seg.p[0], seg.n[0] }, { seg.p[1], seg.n[1] } };
		struct msghdr msg = { .msg_iov = iov, .msg_iovlen = seg.n[1] ? 2 : 1 };
		ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				c->out_blocked = true;
			else
				fail(c, errno);
			return;
		}
		uint32_t rd = atomic_load_explicit(&c->ring.rd, memory_order_relaxed);
		if ((int32_t)(c->meter_pos - rd) < 0) /* data the meter never saw (before plug) */
			c->meter_pos = rd;
		meter_ring(c, rd + (uint32_t)n);
		ring_read_commit(&c->ring, (uint32_t)n);
		c->fd_bytes += (uint64_t)n;
		if (n > 0)
			first_data(c);
	}
}

/* playback: how much may be read from the fd into the ring now */
static uint32_t playback_room(struct al_cable *c)
{
	return c->ring.size - ring_fill(&c->ring);
}

/* playback: a read that returned n <= 0; true: try again (EINTR) */
static bool playback_read_end(struct al_cable *c, ssize_t n)
{
	if (n < 0 && errno == EINTR)
		return true;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return false;
	if (n == 0 || errno == ECONNRESET) {
		/* EOF; or the server went away without reading our lines: like EOF */
		c->eof_seen = true;
		atomic_store_explicit(&c->eof, 1, memory_order_release);
		post(c, AL_CABLE_EOF, 0);
		return false;
	}
	fail(c, errno);
	return false;
}

/* playback before start(): nothing enters the ring (the server is held at
 * its socket); read ahead at most `hold` into pending, only to see an EOF */
static void playback_hold(struct al_cable *c)
{
	while (!c->eof_seen && !c->failed) {
		if (c->consume_debt > 0) /* clock=1: al_cable_consume's rest, from what was read */
			c->consume_debt -= consume_pending(c, c->consume_debt);
		uint32_t have = c->pending_len - c->pending_off;
		if (have >= c->hold || c->pending_len >= c->pending_cap) {
			c->in_paused = true; /* start() kicks us */
			return;
		}
		uint32_t want = RING_MIN(c->hold - have, c->pending_cap - c->pending_len);
		ssize_t n = read(c->fd, c->pending + c->pending_len, want);
		if (n > 0) {
			c->pending_len += (uint32_t)n;
			continue;
		}
		if (!playback_read_end(c, n)) {
			c->consume_debt = 0; /* the fd has no more now: the rest is not owed */
			return;
		}
	}
	c->consume_debt = 0;
}

static void playback_commit(struct al_cable *c, uint32_t n)
{
	ring_write_commit(&c->ring, n);
	meter_ring(c, atomic_load_explicit(&c->ring.wr, memory_order_relaxed));
	c->fd_bytes += n;
	if (atomic_load(&c->gate)) {
		atomic_store_explicit(&c->primed, 1, memory_order_release);
		first_data(c);
	}
}

/* playback: fd -> ring while there is room; pauses reading when full */
static void playback_in(struct al_cable *c)
{
	c->in_paused = false;
	if (!atomic_load(&c->gate)) {
		playback_hold(c);
		return;
	}
	while (c->pending_off < c->pending_len) {
		uint32_t room = playback_room(c);
		if (room == 0)
			goto full;
		struct ring_seg seg;
		uint32_t k = ring_write_segments(&c->ring, RING_MIN(room, c->pending_len - c->pending_off), &seg);
		memcpy(seg.p[0], c->pending + c->pending_off, seg.n[0]);
		memcpy(seg.p[1], c->pending + c->pending_off + seg.n[0], seg.n[1]);
		c->pending_off += k;
		playback_commit(c, k);
	}
	while (!c->eof_seen && !c->failed) {
		uint32_t room = playback_room(c);
		if (room == 0)
			goto full;
		struct ring_seg seg;
		ring_write_segments(&c->ring, room, &seg);
		struct iovec iov[2] = { { seg.p[0], seg.n[0] }, { seg.p[1], seg.n[1] } };
		ssize_t n = readv(c->fd, iov, seg.n[1] ? 2 : 1);
		if (n > 0) {
			playback_commit(c, (uint32_t)n);
			continue;
		}
		if (!playback_read_end(c, n))
			return;
	}
	return;
full:
	c->in_paused = true;
	atomic_store_explicit(&c->want_space, 1, memory_order_release);
}

static void service(struct al_cable *c, uint32_t revents)
{
	if (c->fd < 0 || c->failed || c->finished)
		return;
	if (revents & EPOLLOUT)
		c->out_blocked = false;
	if (c->is_sink) {
		if (!c->eof_seen && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
			capture_in(c);
		if (c->eof_seen) {
			/* a reading server that closed (or half-closed): only the lines asked for still go out */
			if (!c->out_blocked)
				flush_ctl(c);
			set_mask(c, 0);
			return;
		}
		if (!c->out_blocked && flush_ctl(c) && atomic_load(&c->started))
			capture_out(c);
	} else {
		if (c->start_held && atomic_load(&c->flow_seen) && release_start(c) < 0)
			fail(c, ENOSPC);
		if (!c->out_blocked)
			flush_ctl(c);
		if (!c->eof_seen || c->pending_off < c->pending_len)
			playback_in(c);
		if (c->eof_seen && !c->drained_sent && c->pending_off >= c->pending_len &&
		    ring_fill(&c->ring) < c->stride && atomic_load(&c->gate)) {
			c->drained_sent = true;
			post(c, AL_CABLE_DRAINED, 0);
		}
	}
	finish_if_done(c);
	if (c->failed || c->finished)
		return;
	uint32_t want = 0;
	if (c->is_sink ? !c->eof_seen : (!c->eof_seen && !c->in_paused))
		want |= EPOLLIN;
	if (c->out_blocked)
		want |= EPOLLOUT;
	set_mask(c, want);
}

void *al_io_main(void *arg)
{
	struct al_host *h = arg;
	struct epoll_event evs[32];
	for (;;) {
		int n = epoll_wait(h->epfd, evs, 32, -1);
		if (n < 0 && errno != EINTR)
			break;
		pthread_mutex_lock(&h->io_lock);
		if (h->io_stop) {
			pthread_mutex_unlock(&h->io_lock);
			break;
		}
		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == NULL) {
				uint64_t v;
				ssize_t r = read(h->efd, &v, sizeof(v));
				(void)r;
			}
		}
		struct al_cable *c, *tc;
		al_list_for_each_safe(c, tc, &h->io_cables, struct al_cable, io_link) {
			uint32_t revents = 0;
			for (int i = 0; i < n; i++)
				if (evs[i].data.ptr == c)
					revents |= evs[i].events;
			bool kicked = atomic_exchange_explicit(&c->kick, 0, memory_order_acq_rel);
			if (revents || kicked)
				service(c, revents);
		}
		pthread_mutex_unlock(&h->io_lock);
	}
	return NULL;
}

void al_io_stop(struct al_host *h)
{
	if (!h->io_started)
		return;
	pthread_mutex_lock(&h->io_lock);
	h->io_stop = true;
	struct al_cable *c, *tc;
	al_list_for_each_safe(c, tc, &h->io_cables, struct al_cable, io_link) {
		set_mask(c, 0);
		close(c->fd);
		c->fd = -1;
		al_list_remove(&c->io_link);
	}
	pthread_mutex_unlock(&h->io_lock);
	al_host_kick_io(h);
	pthread_join(h->io_thread, NULL);
	close(h->efd);
	close(h->epfd);
	h->efd = h->epfd = -1;
	h->io_started = false;
}
