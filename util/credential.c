/* credential.c - renewable credential state (see credential.h). */
#include "credential.h"

#include <stdio.h>
#include <string.h>

double credential_renew_at(const struct credential_timing *t)
{
	if (!t->renewable || t->ttl <= 0)
		return -1;
	return t->obtained_at + t->ttl * 2.0 / 3.0;
}

bool credential_renew_due(const struct credential_timing *t, double now)
{
	double at = credential_renew_at(t);
	return at >= 0 && now >= at;
}

bool credential_expired(const struct credential_timing *t, double now)
{
	if (t->ttl <= 0)
		return false;
	return now >= t->obtained_at + t->ttl - 1.0;
}

void credential_init(struct credential *c, clock_fn now)
{
	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->refresh_lock, NULL);
	c->now = now ? now : clock_monotonic;
}

void credential_set_clock(struct credential *c, clock_fn now)
{
	pthread_mutex_lock(&c->lock);
	c->now = now ? now : clock_monotonic;
	pthread_mutex_unlock(&c->lock);
}

void credential_destroy(struct credential *c)
{
	secret_free(c->value);
	c->value = NULL;
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->refresh_lock);
}

void credential_install(struct credential *c, struct secret *value,
                        const struct credential_timing *timing)
{
	credential_install_from(c, value, timing, NULL);
}

void credential_install_from(struct credential *c, struct secret *value,
                             const struct credential_timing *timing, const char *source)
{
	pthread_mutex_lock(&c->lock);
	if (source)
		snprintf(c->source, sizeof(c->source), "%s", source);
	if (value) {
		secret_free(c->value);
		c->value = value;
		c->generation++;
	}
	if (timing) {
		c->timing = *timing;
		c->timing_known = true;
	} else if (value) {
		c->timing_known = false;
		memset(&c->timing, 0, sizeof(c->timing));
	}
	c->next_renew_at = 0;
	pthread_mutex_unlock(&c->lock);
}

struct credential_timing credential_timing_left(struct credential *c, double left)
{
	pthread_mutex_lock(&c->lock);
	double now = c->now();
	pthread_mutex_unlock(&c->lock);
	/* ttl 0 would mean "never": an expired value keeps a tiny positive one */
	struct credential_timing t = { .renewable = true, .obtained_at = now,
	                               .ttl = left > 0.001 ? left : 0.001 };
	return t;
}

struct secret *credential_snapshot(struct credential *c, unsigned *generation)
{
	pthread_mutex_lock(&c->lock);
	struct secret *t = secret_dup(c->value);
	if (generation)
		*generation = c->generation;
	pthread_mutex_unlock(&c->lock);
	return t;
}

bool credential_changed(struct credential *c, unsigned generation)
{
	pthread_mutex_lock(&c->lock);
	bool changed = c->generation != generation;
	pthread_mutex_unlock(&c->lock);
	return changed;
}

void credential_needs(struct credential *c, bool can_login, bool *login, bool *renew)
{
	pthread_mutex_lock(&c->lock);
	double now = c->now();
	bool have = c->value != NULL;
	bool expired = have && c->timing_known && credential_expired(&c->timing, now);
	*login = can_login && (!have || expired);
	*renew = have && !expired && c->timing_known && credential_renew_due(&c->timing, now) &&
	         now >= c->next_renew_at;
	pthread_mutex_unlock(&c->lock);
}

bool credential_begin(struct credential *c, bool can_login, bool wait, bool *login, bool *renew)
{
	credential_needs(c, can_login, login, renew);
	if (!*login && !*renew)
		return false;
	if (*login || wait)
		pthread_mutex_lock(&c->refresh_lock);
	else if (pthread_mutex_trylock(&c->refresh_lock) != 0)
		return false;   /* another thread renews; the current value still works */
	/* The thread before us may have done it: look again. */
	credential_needs(c, can_login, login, renew);
	if (!*login && !*renew) {
		pthread_mutex_unlock(&c->refresh_lock);
		return false;
	}
	return true;
}

void credential_end(struct credential *c)
{
	pthread_mutex_unlock(&c->refresh_lock);
}

void credential_retry_later(struct credential *c)
{
	pthread_mutex_lock(&c->lock);
	double now = c->now();
	double end = c->timing.obtained_at + c->timing.ttl;
	double wait = (end - now) / 3.0;
	c->next_renew_at = now + (wait > 1.0 ? wait : 1.0);
	pthread_mutex_unlock(&c->lock);
}

void credential_expiry_text(struct credential *c, char *buf, size_t size)
{
	snprintf(buf, size, "unknown");
	pthread_mutex_lock(&c->lock);
	if (c->value && c->timing_known) {
		if (c->timing.ttl <= 0) {
			snprintf(buf, size, "never");
		} else {
			double left = c->timing.obtained_at + c->timing.ttl - c->now();
			clock_rfc3339(clock_wall() + left, buf, size);
		}
	}
	pthread_mutex_unlock(&c->lock);
}

void credential_source_text(struct credential *c, char *buf, size_t size)
{
	pthread_mutex_lock(&c->lock);
	snprintf(buf, size, "%s", c->value ? (c->source[0] ? c->source : "unknown") : "none");
	pthread_mutex_unlock(&c->lock);
}
