/* health.c - the health state of the backend: a checker thread probes it
 * every health_interval_seconds, real operations feed their outcomes in,
 * and health/<backend> renders the state without ever calling the backend
 * (a hung backend must not hang `cat health/vault`). */
#include "keyfs.h"
#include "clock.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Outcomes that say something about reachability: the backend answered
 * (even "not found" or "refused") or it did not. */
static bool outcome_is_failure(int rc)
{
	return rc == -EIO || rc == -ETIMEDOUT || rc == -ENOMEM;
}

static void health_set(struct keyfs *k, bool up, double latency, const char *error,
                       const char *detail)
{
	struct health_state *h = &k->health;
	pthread_mutex_lock(&h->lock);
	bool was_up = atomic_load_explicit(&h->up, memory_order_relaxed);
	bool was_checked = atomic_load_explicit(&h->checked, memory_order_relaxed);
	/* health_record() reads these two without the lock. */
	atomic_store_explicit(&h->checked, true, memory_order_relaxed);
	atomic_store_explicit(&h->up, up, memory_order_relaxed);
	h->checked_at = clock_wall();
	if (latency >= 0)
		h->latency_seconds = latency;
	if (up) {
		h->consecutive_failures = 0;
	} else {
		h->consecutive_failures++;
		snprintf(h->last_error, sizeof(h->last_error), "%s", error && *error ? error : "unavailable");
	}
	if (detail)
		snprintf(h->detail, sizeof(h->detail), "%s", detail);
	pthread_mutex_unlock(&h->lock);

	metrics_backend_up(k->metrics_index, up);
	if (!was_checked || was_up != up)
		log_kv(up ? LOG_LEVEL_INFO : LOG_LEVEL_WARN, up ? "backend up" : "backend down",
		       "backend", k->backend_name, "error", up ? "" : (error ? error : ""),
		       (char *)NULL);
}

void health_record(struct keyfs *k, int rc, const struct backend_err *err)
{
	if (outcome_is_failure(rc))
		health_set(k, false, -1, err && err->msg[0] ? err->msg : strerror(-rc), NULL);
	else if (!atomic_load_explicit(&k->health.up, memory_order_relaxed) ||
	         !atomic_load_explicit(&k->health.checked, memory_order_relaxed))
		health_set(k, true, -1, NULL, NULL);
	/* An up backend that answers again changes nothing: skip the lock. */
}

void health_check_now(struct keyfs *k)
{
	struct backend_health bh;
	memset(&bh, 0, sizeof(bh));
	double t0 = clock_monotonic();
	k->backend->ops->health(k->backend, &bh);
	double latency = bh.latency_seconds > 0 ? bh.latency_seconds : clock_monotonic() - t0;
	health_set(k, bh.up, latency, bh.error, bh.detail);
}

int health_render(struct keyfs *k, struct strbuf *out)
{
	struct health_state *h = &k->health;
	char when[40] = "never";
	pthread_mutex_lock(&h->lock);
	if (h->checked)
		clock_rfc3339(h->checked_at, when, sizeof(when));
	strbuf_printf(out, "%s\nbackend: %s\nchecked_at: %s\nlatency_seconds: %.6f\n"
	              "consecutive_failures: %ld\nlast_error: %s\n",
	              h->checked && h->up ? "up" : "down", k->backend_name, when,
	              h->latency_seconds, h->consecutive_failures,
	              h->last_error[0] ? h->last_error : "none");
	strbuf_puts(out, h->detail);
	if (h->detail[0] && h->detail[strlen(h->detail) - 1] != '\n')
		strbuf_puts(out, "\n");
	pthread_mutex_unlock(&h->lock);
	return out->error;
}
