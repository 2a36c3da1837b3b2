/* The host: event queue, JS targets, the I/O thread's lifetime (see host.h). */
#define _GNU_SOURCE /* pthread_setname_np */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cable.h"
#include "host.h"

/* [js] */
static void host_free_if_done(struct al_host *h)
{
	if (h->refs > 0 || !h->async_closed)
		return;
	pthread_mutex_destroy(&h->ev_lock);
	pthread_mutex_destroy(&h->io_lock);
	free(h);
}

void al_host_ref(struct al_host *h)
{
	h->refs++;
}

void al_host_unref(struct al_host *h)
{
	if (--h->refs == 0)
		host_free_if_done(h);
}

static void update_async_ref(struct al_host *h)
{
	bool want = h->async_users > 0 && !h->gone;
	if (want == h->async_ref || h->async_closed)
		return;
	if (want)
		uv_ref((uv_handle_t *)&h->async);
	else
		uv_unref((uv_handle_t *)&h->async);
	h->async_ref = want;
}

static struct al_target *find_target(struct al_host *h, uint32_t id)
{
	struct al_target *t;
	al_list_for_each(t, &h->targets, struct al_target, link)
		if (t->id == id)
			return t;
	return NULL;
}

/* [js] the batched wake-up: queued events first, then data wakes */
static void on_async(uv_async_t *handle)
{
	struct al_host *h = handle->data;
	struct al_list local;
	struct al_event *ev, *tev;
	napi_handle_scope scope;

	if (h->gone)
		return;
	al_list_init(&local);
	pthread_mutex_lock(&h->ev_lock);
	al_list_splice(&local, &h->events);
	pthread_mutex_unlock(&h->ev_lock);

	napi_open_handle_scope(h->env, &scope);
	al_list_for_each_safe(ev, tev, &local, struct al_event, link) {
		al_list_remove(&ev->link);
		struct al_target *t = h->gone ? NULL : find_target(h, ev->target);
		if (t != NULL && t->live)
			t->deliver(t, ev);
		free(ev);
	}
	/* a target may be removed by a callback: restart the walk after each call */
	bool again = true;
	while (again && !h->gone) {
		again = false;
		struct al_target *t;
		al_list_for_each(t, &h->targets, struct al_target, link) {
			if (t->live && t->wake != NULL &&
			    atomic_exchange_explicit(t->wake, 0, memory_order_acq_rel)) {
				t->deliver(t, NULL);
				again = true;
				break;
			}
		}
	}
	napi_close_handle_scope(h->env, scope);
}

static void on_async_closed(uv_handle_t *handle)
{
	struct al_host *h = handle->data;
	h->async_closed = true;
	host_free_if_done(h);
}

/* [js] environment teardown: everything native stops here */
static void host_cleanup(void *arg)
{
	struct al_host *h = arg;
	h->gone = true;
	/* backends first (cores close their streams: [rt] leaves the cables) */
	al_cores_close_all(h);
	al_io_stop(h);
	struct al_event *ev, *tev;
	al_list_for_each_safe(ev, tev, &h->events, struct al_event, link) {
		al_list_remove(&ev->link);
		free(ev);
	}
	struct al_target *t, *tt;
	al_list_for_each_safe(t, tt, &h->targets, struct al_target, link)
		al_target_remove(h, t);
	if (h->async_ctx) {
		napi_async_destroy(h->env, h->async_ctx);
		h->async_ctx = NULL;
	}
	uv_close((uv_handle_t *)&h->async, on_async_closed);
	al_host_unref(h); /* the environment's reference */
}

struct al_host *al_host_get(napi_env env)
{
	struct al_host *h = NULL;
	if (napi_get_instance_data(env, (void **)&h) == napi_ok && h != NULL)
		return h;
	h = calloc(1, sizeof(*h));
	if (h == NULL)
		return NULL;
	h->env = env;
	h->refs = 1;
	h->next_id = 1;
	h->epfd = -1;
	h->efd = -1;
	al_list_init(&h->events);
	al_list_init(&h->targets);
	al_list_init(&h->io_cables);
	al_cores_init(h);
	pthread_mutex_init(&h->ev_lock, NULL);
	pthread_mutex_init(&h->io_lock, NULL);
	uv_loop_t *loop = NULL;
	napi_get_uv_event_loop(env, &loop);
	uv_async_init(loop, &h->async, on_async);
	h->async.data = h;
	uv_unref((uv_handle_t *)&h->async);
	napi_value res_name;
	napi_create_string_utf8(env, "audioloop:native", NAPI_AUTO_LENGTH, &res_name);
	napi_async_init(env, NULL, res_name, &h->async_ctx);
	napi_set_instance_data(env, h, NULL, NULL);
	napi_add_env_cleanup_hook(env, host_cleanup, h);
	return h;
}

void al_target_add(struct al_host *h, struct al_target *t, napi_value callback,
		   void (*deliver)(struct al_target *, const struct al_event *))
{
	t->id = h->next_id++;
	t->deliver = deliver;
	t->live = true;
	t->callback = NULL;
	if (callback != NULL)
		napi_create_reference(h->env, callback, 1, &t->callback);
	al_list_append(&h->targets, &t->link);
	h->async_users++;
	update_async_ref(h);
}

void al_target_remove(struct al_host *h, struct al_target *t)
{
	if (!t->live)
		return;
	t->live = false;
	al_list_remove(&t->link);
	if (t->callback != NULL) {
		napi_delete_reference(h->env, t->callback);
		t->callback = NULL;
	}
	h->async_users--;
	update_async_ref(h);
}

void al_target_call(struct al_host *h, struct al_target *t, int argc, napi_value *argv)
{
	napi_value fn, global, result;
	if (!t->live || t->callback == NULL || napi_get_reference_value(h->env, t->callback, &fn) != napi_ok ||
	    fn == NULL)
		return;
	napi_get_global(h->env, &global);
	napi_make_callback(h->env, h->async_ctx, global, fn, argc, argv, &result);
}

void al_host_push(struct al_host *h, int type, uint32_t target, int64_t a, int64_t b, const char *text)
{
	struct al_event *ev = calloc(1, sizeof(*ev));
	if (ev == NULL)
		return;
	ev->type = type;
	ev->target = target;
	ev->a = a;
	ev->b = b;
	if (text)
		snprintf(ev->text, sizeof(ev->text), "%s", text);
	pthread_mutex_lock(&h->ev_lock);
	al_list_append(&h->events, &ev->link);
	pthread_mutex_unlock(&h->ev_lock);
	uv_async_send(&h->async);
}

void al_host_kick_io(struct al_host *h)
{
	uint64_t one = 1;
	if (h->efd >= 0) {
		ssize_t r = write(h->efd, &one, sizeof(one));
		(void)r;
	}
}

int al_host_io_start(struct al_host *h)
{
	if (h->io_started)
		return 0;
	if (h->gone)
		return -EBADF;
	h->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (h->epfd < 0)
		return -errno;
	h->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (h->efd < 0) {
		int err = -errno;
		close(h->epfd);
		h->epfd = -1;
		return err;
	}
	struct epoll_event e = { .events = EPOLLIN, .data.ptr = NULL };
	epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->efd, &e);
	h->io_stop = false;
	int res = pthread_create(&h->io_thread, NULL, al_io_main, h);
	if (res != 0) {
		close(h->efd);
		close(h->epfd);
		h->efd = h->epfd = -1;
		return -res;
	}
	pthread_setname_np(h->io_thread, "audioloop-io"); /* top -H, /proc/PID/task/TID/comm */
	h->io_started = true;
	return 0;
}
