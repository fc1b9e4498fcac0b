/* services: what a stage uses instead of blocking the loop: programs (uv_spawn with pipes,
 * an output cap, a timeout that kills the whole process group), blocking work on the
 * thread pool, one-shot timers, and first-come-first-served locks on named resources.
 * Every operation completes exactly once on the loop; services_cancel_all ends what is
 * still pending (children killed, waiters and timers told OL_ECANCELED) when a run stops. */
#ifndef OL_SERVICES_H
#define OL_SERVICES_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "opsline/opsline.h"

typedef struct services services;

int services_new(uv_loop_t *loop, services **out);
/* Kill every child (SIGKILL to its process group) and complete every pending timer, lock
 * waiter and queued work with OL_ECANCELED. Completions still arrive on the loop. */
void services_cancel_all(services *s);
/* Nothing may be pending (run the loop after services_cancel_all first). */
void services_free(services *s);
/* Operations still pending (children, work, timers, lock waiters). */
size_t services_pending(const services *s);

int services_proc_run(services *s, const ol_proc_spec *spec, ol_proc_cb cb, void *arg);
int services_work(services *s, ol_work_fn work, ol_after_work_cb after, void *arg);
int services_timer_start(services *s, uint64_t ms, ol_timer_cb cb, void *arg, ol_timer **out);
void services_timer_stop(ol_timer *t);
int services_lock(services *s, const char *resource, ol_lock_cb cb, void *arg);
/* The lock is invalid afterwards: one nobody holds or waits for is freed. */
void services_unlock(ol_lock *lock);
/* Locks that exist: held, or waited for. */
size_t services_lock_count(const services *s);

/* Nonzero when a variable of the host's environment must not reach a child: AWS
 * credentials and names holding PASSWORD, PASSPHRASE, SECRET or TOKEN as a word. */
int services_env_is_secret(const char *entry);

#endif
