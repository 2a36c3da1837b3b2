/*
 * Lock-free single-producer single-consumer byte ring.
 *
 * `size` is a power of two; `wr` and `rd` are free-running 32-bit byte
 * counters (wrap-around arithmetic), so fill = wr - rd.  The producer only
 * stores `wr`, the consumer only stores `rd`; release/acquire pairs make the
 * copied bytes visible before the index that publishes them.  The same
 * scheme as spa_ringbuffer (kept here so that the cable needs no libspa).
 *
 * Besides copy in/out, each side can work in place: ring_*_segments() give
 * the (at most two) contiguous regions, ring_*_commit() publishes them, so
 * that readv()/writev() move bytes between the ring and a socket directly.
 */
#ifndef AL_RING_H
#define AL_RING_H

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

struct ring {
	uint8_t *data;
	uint32_t size;
	uint32_t mask;
	_Atomic uint32_t wr;
	_Atomic uint32_t rd;
};

struct ring_seg {
	uint8_t *p[2];
	uint32_t n[2];
};

#define RING_MIN(a, b) ((a) < (b) ? (a) : (b))

/* [any] bytes readable now */
static inline uint32_t ring_fill(struct ring *r)
{
	return atomic_load_explicit(&r->wr, memory_order_acquire) -
	       atomic_load_explicit(&r->rd, memory_order_acquire);
}

/* producer: the free regions, up to n bytes; returns their total */
static inline uint32_t ring_write_segments(struct ring *r, uint32_t n, struct ring_seg *seg)
{
	uint32_t wr = atomic_load_explicit(&r->wr, memory_order_relaxed);
	uint32_t rd = atomic_load_explicit(&r->rd, memory_order_acquire);
	uint32_t space = r->size - (wr - rd);
	if (n > space)
		n = space;
	uint32_t off = wr & r->mask;
	seg->p[0] = r->data + off;
	seg->n[0] = RING_MIN(n, r->size - off);
	seg->p[1] = r->data;
	seg->n[1] = n - seg->n[0];
	return n;
}

/* producer: publishes n bytes written into the free regions */
static inline void ring_write_commit(struct ring *r, uint32_t n)
{
	uint32_t wr = atomic_load_explicit(&r->wr, memory_order_relaxed);
	atomic_store_explicit(&r->wr, wr + n, memory_order_release);
}

/* consumer: the filled regions, up to n bytes; returns their total */
static inline uint32_t ring_read_segments(struct ring *r, uint32_t n, struct ring_seg *seg)
{
	uint32_t rd = atomic_load_explicit(&r->rd, memory_order_relaxed);
	uint32_t wr = atomic_load_explicit(&r->wr, memory_order_acquire);
	uint32_t avail = wr - rd;
	if (n > avail)
		n = avail;
	uint32_t off = rd & r->mask;
	seg->p[0] = r->data + off;
	seg->n[0] = RING_MIN(n, r->size - off);
	seg->p[1] = r->data;
	seg->n[1] = n - seg->n[0];
	return n;
}

/* consumer: releases n bytes */
static inline void ring_read_commit(struct ring *r, uint32_t n)
{
	uint32_t rd = atomic_load_explicit(&r->rd, memory_order_relaxed);
	atomic_store_explicit(&r->rd, rd + n, memory_order_release);
}

/* producer: copies min(n, free) bytes, returns bytes copied */
static inline uint32_t ring_write(struct ring *r, const uint8_t *src, uint32_t n)
{
	struct ring_seg s;
	n = ring_write_segments(r, n, &s);
	memcpy(s.p[0], src, s.n[0]);
	memcpy(s.p[1], src + s.n[0], s.n[1]);
	ring_write_commit(r, n);
	return n;
}

/* consumer: copies min(n, fill) bytes, returns bytes copied */
static inline uint32_t ring_read(struct ring *r, uint8_t *dst, uint32_t n)
{
	struct ring_seg s;
	n = ring_read_segments(r, n, &s);
	memcpy(dst, s.p[0], s.n[0]);
	memcpy(dst + s.n[0], s.p[1], s.n[1]);
	ring_read_commit(r, n);
	return n;
}

#endif
