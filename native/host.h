/*
 * The host: one per JS environment, backend-neutral. It owns
 *   - the event queue from native threads to JS and the one uv_async_t that
 *     delivers it in batches ([loop]/[io] push under ev_lock, [js] pops);
 *   - the targets (cores and streams) events are addressed to, by id;
 *   - the I/O thread ([io]) that moves PCM between cable rings and sockets
 *     (see cable.h), started on first use.
 * Every core, stream and cable holds a reference; the host is freed when
 * the last one and the environment are gone, so no handle outlives it.
 *
 * Threads: [js] Node's main thread; [loop] a backend's own thread (the
 * pw_thread_loop); [rt] the realtime data callback; [io] our I/O thread.
 */
#ifndef AL_HOST_H
#define AL_HOST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <node_api.h>
#include <uv.h>

#include "list.h"

#define AL_MAX_EVENT_TEXT 256

enum al_event_type {
	AL_EV_STATE = 1,  /* backend stream state: a = node id, b = state code, text = error */
	AL_EV_FORMAT,     /* negotiated format: a = rate, b = channels */
	AL_EV_CORE_ERROR, /* core error: a = object id, b = res, text = message */
	AL_EV_GRAPH,      /* mirror changed: a = 1 added / 0 removed, b = id, text = kind */
	AL_EV_LINKS,      /* client links to a stream's node: a = count */
	AL_EV_CABLE,      /* cable data event: a = enum al_cable_event, b = -errno or 0 */
};

struct al_event {
	struct al_list link;
	int type;
	uint32_t target; /* al_target id */
	int64_t a, b;
	char text[AL_MAX_EVENT_TEXT];
};

struct al_host;

/* Something JS listens to: a core or a stream. [js] only. */
struct al_target {
	struct al_list link;   /* in host->targets */
	uint32_t id;
	napi_ref callback;
	/* [js] called for each event addressed to this target, and (ev == NULL) for a data wake */
	void (*deliver)(struct al_target *t, const struct al_event *ev);
	_Atomic int *wake;     /* data wake-up flag (set by [rt]), or NULL */
	bool live;
};

struct al_host {
	napi_env env;
	int refs;                       /* [js] */
	bool gone;                      /* [js] the environment is being torn down */

	uv_async_t async;               /* [js] owns; uv_async_send from anywhere */
	bool async_closed;
	int async_users;                /* [js] live targets keeping the event loop alive */
	bool async_ref;
	napi_async_context async_ctx;

	pthread_mutex_t ev_lock;        /* protects events; never taken in [rt] */
	struct al_list events;

	struct al_list targets;         /* [js] */
	struct al_list cores;           /* [js] open al_core (backend.c) */
	uint32_t next_id;               /* [js] */

	/* the I/O thread (cable.c) */
	pthread_mutex_t io_lock;        /* guards the fd side of every cable; never taken in [rt] */
	struct al_list io_cables;       /* [io_lock] cables with an fd */
	pthread_t io_thread;
	bool io_started;                /* [js] */
	bool io_stop;                   /* [io_lock] */
	int epfd;                       /* epoll set of the I/O thread */
	int efd;                        /* eventfd: [rt]/[js] kick the I/O thread */
};

/* [js] the host of this environment, created on first use */
struct al_host *al_host_get(napi_env env);
void al_host_ref(struct al_host *h);
void al_host_unref(struct al_host *h);

/* [js] registers a target; a = its callback */
void al_target_add(struct al_host *h, struct al_target *t, napi_value callback,
		   void (*deliver)(struct al_target *, const struct al_event *));
/* [js] idempotent: no more events reach t */
void al_target_remove(struct al_host *h, struct al_target *t);
/* [js] calls the target's JS callback with argv (inside the host's async context) */
void al_target_call(struct al_host *h, struct al_target *t, int argc, napi_value *argv);

/* [loop]/[io]/[js] (never [rt]) queues an event for JS and wakes it */
void al_host_push(struct al_host *h, int type, uint32_t target, int64_t a, int64_t b,
		  const char *text);
/* [rt]/[any] wakes JS for data flags (al_target.wake); no allocation, no lock */
static inline void al_host_wake_js(struct al_host *h)
{
	uv_async_send(&h->async);
}

/* [js] starts the I/O thread if it is not running; 0 or -errno */
int al_host_io_start(struct al_host *h);
/* [rt]/[any] wakes the I/O thread (one eventfd write) */
void al_host_kick_io(struct al_host *h);

#endif
