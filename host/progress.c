/* progress: the live status line (terminal) or the periodic progress lines (logs). The
 * line is drawn with "\r" and erase-to-end-of-line, cut to the terminal's width so that it
 * never wraps (a wrapped line cannot be erased in place), and erased before any other
 * output (progress_hide). Requests per second are measured over the last second or more;
 * the ETA comes from the items' completion rate since the start. */
#include "progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "opsline/opsline.h"

#define RATE_WINDOW_MS 1000u

struct progress {
    uv_timer_t timer;
    progress_mode mode;
    progress_count_fn fn;
    void *arg;
    int shown;  /* the status line is on the screen */
    int colour; /* NO_COLOR unset */
    uint64_t start_ms;
    uint64_t sample_ms; /* the rate's last sample: when, and the requests then */
    unsigned long sample_requests;
    double rate;
};

progress_mode progress_mode_for_stderr(int quiet, uint64_t *interval_ms) {
    const char *iv = getenv("OPSLINE_PROGRESS_INTERVAL");
    const char *term = getenv("TERM");
    *interval_ms = PROGRESS_PLAIN_INTERVAL_MS;
    if (iv != NULL && *iv != '\0') {
        char *end = NULL;
        double s = strtod(iv, &end);
        if (end != iv && *end == '\0' && s >= 0 && s <= 86400)
            *interval_ms = (uint64_t)(s * 1000);
    }
    if (quiet)
        return PROGRESS_NONE;
    if (isatty(STDERR_FILENO) && (term == NULL || strcmp(term, "dumb") != 0))
        return PROGRESS_TTY;
    return *interval_ms > 0 ? PROGRESS_PLAIN : PROGRESS_NONE;
}

static void put_duration(char *buf, size_t n, double s) {
    unsigned long t = (unsigned long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%lu:%02lu", t / 60, t % 60);
}

size_t progress_format(const progress_counts *c, double elapsed, double rate, int colour, char *buf,
                       size_t n) {
    char eta[32] = "--";
    if (c->done > 0 && c->done < c->total && elapsed > 0)
        put_duration(eta, sizeof(eta), (double)(c->total - c->done) * elapsed / (double)c->done);
    else if (c->done >= c->total)
        snprintf(eta, sizeof(eta), "0:00");
    const char *red = colour && c->failed > 0 ? "\033[31m" : "";
    const char *off = *red ? "\033[0m" : "";
    int len =
        snprintf(buf, n,
                 "%zu/%zu done, %s%zu failed%s, %zu in flight, %.1f req/s, %lu throttled, "
                 "ETA %s",
                 c->done, c->total, red, c->failed, off, c->in_flight, rate, c->throttled, eta);
    if (len < 0)
        return 0;
    return (size_t)len < n ? (size_t)len : n - 1;
}

/* The terminal's width, 80 when it cannot be asked. */
static size_t tty_columns(void) {
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return 80;
}

static void sample(progress *p, progress_counts *c, double *elapsed) {
    uint64_t now = uv_now(p->timer.loop);
    p->fn(p->arg, c);
    if (p->sample_ms == p->start_ms && now > p->start_ms)
        p->rate = (double)c->requests * 1000.0 / (double)(now - p->start_ms); /* first second */
    if (now - p->sample_ms >= RATE_WINDOW_MS) {
        p->rate =
            (double)(c->requests - p->sample_requests) * 1000.0 / (double)(now - p->sample_ms);
        p->sample_ms = now;
        p->sample_requests = c->requests;
    }
    *elapsed = (double)(now - p->start_ms) / 1000.0;
}

static void draw_tty(progress *p) {
    progress_counts c;
    double elapsed;
    char text[512];
    sample(p, &c, &elapsed);
    /* Colour codes take no columns: measure without them, cut, then draw with them when the
     * whole line fits. */
    size_t len = progress_format(&c, elapsed, p->rate, 0, text, sizeof(text));
    size_t width = tty_columns() - 1;
    if (len <= width)
        len = progress_format(&c, elapsed, p->rate, p->colour, text, sizeof(text));
    else
        text[len = width] = '\0';
    fprintf(stderr, "\r\033[K%.*s", (int)len, text);
    fflush(stderr);
    p->shown = 1;
}

static void draw_plain(progress *p) {
    progress_counts c;
    double elapsed;
    char text[512];
    sample(p, &c, &elapsed);
    progress_format(&c, elapsed, p->rate, 0, text, sizeof(text));
    fprintf(stderr, "progress: %s\n", text);
    fflush(stderr);
}

static void on_tick(uv_timer_t *t) {
    progress *p = t->data;
    if (p->mode == PROGRESS_TTY)
        draw_tty(p);
    else
        draw_plain(p);
}

int progress_start(uv_loop_t *loop, progress_mode mode, uint64_t interval_ms, progress_count_fn fn,
                   void *arg, progress **out) {
    const char *no_colour = getenv("NO_COLOR");
    *out = NULL;
    if (mode == PROGRESS_NONE)
        return 0;
    progress *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return OL_ENOMEM;
    p->mode = mode;
    p->fn = fn;
    p->arg = arg;
    p->colour = no_colour == NULL || *no_colour == '\0'; /* https://no-color.org */
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    p->start_ms = p->sample_ms = uv_now(loop);
    uint64_t every = mode == PROGRESS_TTY ? PROGRESS_REDRAW_MS : interval_ms;
    uv_timer_start(&p->timer, on_tick, every, every);
    uv_unref((uv_handle_t *)&p->timer); /* the display never keeps a run alive */
    *out = p;
    return 0;
}

void progress_hide(progress *p) {
    if (p == NULL || !p->shown)
        return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    p->shown = 0;
}

static void on_closed(uv_handle_t *h) {
    free(h->data);
}

void progress_stop(progress *p) {
    if (p == NULL)
        return;
    progress_hide(p);
    uv_close((uv_handle_t *)&p->timer, on_closed);
}
