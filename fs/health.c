/* health.c - the health state of each backend instance: its checker thread
 * probes it every health_interval_seconds, real operations feed their
 * outcomes in, and health/<name> renders the state without ever calling
 * the backend (a hung backend must not hang `cat health/vault`). */
#include "keyops.h"
#include "clock.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Outcomes that say the backend is not usable: it did not answer, or it
 * answered by refusing our credentials (a 403 on every request is not
 * "up").  "not found" and read-only answers are the backend working. */
static bool outcome_is_failure(int rc, const struct backend_err *err)
{
	return rc == -EIO || rc == -ETIMEDOUT || rc == -ENOMEM ||
	       (rc == -EACCES && err && err->auth_failure) ||
	       (rc && err && err->health_down);
}

/* Called with h->lock held.  last_error says what is wrong now: it is
 * cleared when the condition that set it is gone (the backend is up again;
 * for an invalid value, when that network reads valid again). */
static void health_clear_error(struct health_state *h)
{
	h->last_error[0] = 0;
	h->invalid_network[0] = 0;
}

static void health_set(struct instance *in, bool up, double latency, const char *error,
                       const char *detail)
{
	struct health_state *h = &in->health;
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
		if (!h->invalid_network[0])
			health_clear_error(h);
	} else {
		h->consecutive_failures++;
		h->invalid_network[0] = 0;
		snprintf(h->last_error, sizeof(h->last_error), "%s", error && *error ? error : "unavailable");
	}
	if (detail)
		snprintf(h->detail, sizeof(h->detail), "%s", detail);
	pthread_mutex_unlock(&h->lock);

	metrics_backend_up(in->metrics, up);
	if (!was_checked || was_up != up)
		log_kv(up ? LOG_LEVEL_INFO : LOG_LEVEL_WARN, up ? "backend up" : "backend down",
		       "storage_type", in->name, "error", up ? "" : (error ? error : ""),
		       (char *)NULL);
}

void health_record(struct instance *in, int rc, const struct backend_err *err)
{
	if (outcome_is_failure(rc, err)) {
		if (rc == -EACCES)
			atomic_store_explicit(&in->health.auth_refused, true, memory_order_relaxed);
		health_set(in, false, -1, err && err->msg[0] ? err->msg : strerror(-rc), NULL);
		return;
	}
	/* The backend answered a real request with our credentials. */
	if (atomic_load_explicit(&in->health.auth_refused, memory_order_relaxed))
		atomic_store_explicit(&in->health.auth_refused, false, memory_order_relaxed);
	if (!atomic_load_explicit(&in->health.up, memory_order_relaxed) ||
	    !atomic_load_explicit(&in->health.checked, memory_order_relaxed))
		health_set(in, true, -1, NULL, NULL);
	/* An up backend that answers again changes nothing: skip the lock. */
}

void health_note_invalid(struct instance *in, const char *network, const char *msg)
{
	struct health_state *h = &in->health;
	pthread_mutex_lock(&h->lock);
	snprintf(h->last_error, sizeof(h->last_error), "%s: %s", network, msg);
	snprintf(h->invalid_network, sizeof(h->invalid_network), "%s", network);
	pthread_mutex_unlock(&h->lock);
	log_kv(LOG_LEVEL_WARN, "backend returned an invalid key", "network", network,
	       "backend", in->name, "error", msg, (char *)NULL);
}

void health_note_valid(struct instance *in, const char *network)
{
	struct health_state *h = &in->health;
	pthread_mutex_lock(&h->lock);
	if (h->invalid_network[0] && strcmp(h->invalid_network, network) == 0)
		health_clear_error(h);
	pthread_mutex_unlock(&h->lock);
}

/* A check that has not finished this long after it started means the
 * backend is stalled (a hung server, a FIFO where a file should be). */
static double health_check_deadline(const struct instance *in)
{
	double interval = in->k->cfg->keyfs.health_interval_seconds;
	return interval > 5 ? interval : 5;
}

void health_check_now(struct instance *in)
{
	struct backend_health bh;
	memset(&bh, 0, sizeof(bh));
	double t0 = clock_monotonic();
	atomic_store_explicit(&in->health.check_started_ms, (long long)(t0 * 1000) + 1, memory_order_relaxed);
	metrics_backend_check(in->metrics, t0 + health_check_deadline(in));
	if (in->backend->ops->maintain)   /* a hung upkeep shows as a stalled check too */
		in->backend->ops->maintain(in->backend);
	double t1 = clock_monotonic();
	in->backend->ops->health(in->backend, &bh);
	/* The probe does not see a refusal of data requests (a policy that
	 * allows token lookups but not key reads): after real requests were
	 * refused, only a request of that kind that succeeds clears it. */
	if (bh.up && atomic_load_explicit(&in->health.auth_refused, memory_order_relaxed)) {
		struct strlist names = STRLIST_INIT;
		struct backend_err err = { { 0 }, false };
		int rc = in->backend->ops->list(in->backend, &names, 0, &err);
		strlist_clear(&names);
		if (rc == 0) {
			atomic_store_explicit(&in->health.auth_refused, false, memory_order_relaxed);
		} else {
			bh.up = false;
			snprintf(bh.error, sizeof(bh.error), "%s",
			         err.msg[0] ? err.msg : "requests refused by the backend");
		}
	}
	atomic_store_explicit(&in->health.check_started_ms, 0LL, memory_order_relaxed);
	metrics_backend_check(in->metrics, 0);
	double latency = bh.latency_seconds > 0 ? bh.latency_seconds : clock_monotonic() - t1;
	health_set(in, bh.up, latency, bh.error, bh.detail);
}

int health_render(struct instance *in, struct strbuf *out)
{
	struct health_state *h = &in->health;
	char when[40] = "never";
	char stalled[96] = "";
	long long started_ms = atomic_load_explicit(&h->check_started_ms, memory_order_relaxed);
	double running = started_ms > 0 ? clock_monotonic() - (double)started_ms / 1000 : 0;
	if (running > health_check_deadline(in))
		snprintf(stalled, sizeof(stalled), "health check not finished after %.0f s "
		         "(backend stalled)", running);
	pthread_mutex_lock(&h->lock);
	if (h->checked)
		clock_rfc3339(h->checked_at, when, sizeof(when));
	strbuf_printf(out, "%s\nbackend: %s\nstorage_type: %s\nchecked_at: %s\n"
	              "latency_seconds: %.6f\nconsecutive_failures: %ld\nlast_error: %s\n"
	              "calls_in_flight: %d\nmax_calls_in_flight: %d\n",
	              h->checked && h->up && !stalled[0] ? "up" : "down", in->name,
	              in->backend->type->name, when,
	              h->latency_seconds, h->consecutive_failures,
	              stalled[0] ? stalled : h->last_error[0] ? h->last_error : "none",
	              __atomic_load_n(&in->in_flight, __ATOMIC_RELAXED), in->max_in_flight);
	strbuf_puts(out, h->detail);
	if (h->detail[0] && h->detail[strlen(h->detail) - 1] != '\n')
		strbuf_puts(out, "\n");
	pthread_mutex_unlock(&h->lock);
	return out->error;
}
