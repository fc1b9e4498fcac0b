/* provider: temporary credentials fetched while the loop runs, cached, and refreshed before
 * they expire. One provider per AWS client; it fetches from the source credentials_plan chose
 * (credential_process through the services, STS AssumeRole / AssumeRoleWithWebIdentity
 * through a client of its own, the SSO portal, the container endpoint, instance metadata)
 * and never blocks the loop. */
#ifndef OL_AWS_PROVIDER_H
#define OL_AWS_PROVIDER_H

#include <uv.h>

#include "credentials.h"
#include "http.h"

typedef struct provider provider;
typedef struct aws_client aws_client;

/* The HTTP layer the provider sends its unsigned requests through (the client's, so a test's
 * scripted layer answers them too), looked up at each request. */
typedef void (*provider_http_fn)(void *arg, const http_vtable **vt, void **engine);

/* spec is owned by the provider from here on (also on failure). settings are borrowed until
 * provider_close completes (STS calls use their endpoint and region). notify(arg) runs on the
 * loop after every fetch, successful or not: the client then resends what waited. */
int provider_new(uv_loop_t *loop, cred_spec *spec, const aws_settings *settings,
                 provider_http_fn http, void (*notify)(void *arg), void *arg, provider **out);

/* The credentials to sign with now. Returns 0 with *out set (borrowed until the next call into
 * the provider); 1 when the caller must wait for notify (a fetch is under way: no credentials
 * yet, or they expire too soon to sign with); a negative code with the last fetch's message
 * (OL_ECONFIG: a configuration error, such as nothing configured at all; else OL_ECREDS)
 * in *err when that fetch failed and nothing usable is left (a call a few seconds later
 * tries the source again). A fetch starts ahead of time, in the background, when the
 * credentials near their end. */
int provider_get(provider *p, const credentials **out, const char **err);

/* Where the credentials come from (the spec's source), for messages. */
const char *provider_source(const provider *p);

/* A seam for tests: the clock the refresh windows are measured on (seconds since the
 * epoch); fn NULL restores time(). */
void provider_set_clock(provider *p, long long (*fn)(void *arg), void *arg);

/* Fetches made (for tests and -v). */
unsigned provider_fetches(const provider *p);

/* Cancel what is in flight and free the provider; on_closed(arg) runs once everything is
 * released (never from inside this call). */
void provider_close(provider *p, void (*on_closed)(void *arg), void *arg);

#endif
