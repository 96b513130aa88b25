/* TLS load client for the tlswrap benchmark: one thread, epoll, non-blocking OpenSSL.
 *
 * Written for this harness instead of wrk because wrk keeps the TLS session across its
 * reconnects, so its "new connections" are mostly resumed handshakes. Here a full handshake is
 * really full (no session is ever offered) and resumption is a separate, explicit mode.
 *
 * Modes (each prints one JSON object per result line on stdout):
 *   hs    connect, handshake, read the greeting line, close_notify, close; repeat on --conc slots
 *         for --duration seconds after --warmup. --resume offers each slot's last session.
 *   rr    --conc kept-alive connections; each sends a --size byte request and waits for its
 *         echo, repeatedly. Reports round trips/s and p50/p99 latency.
 *   bulk  one connection; --dir down reads --bytes from the backend's bulk source, --dir up
 *         sends them to its sink; the pattern is checked on the receiving side.
 *   hold  opens up to --target connections (at most --conc handshaking at once) and keeps them
 *         idle; then obeys stdin lines: "ping" (one echo on every held connection), "check" (a
 *         fresh connection must get its greeting and an echo), "quit".
 * Every wait is bounded: --conn-timeout per connection step, --timeout for a whole phase.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PERIOD 65521 /* must match backend.c */
#define CHUNK 65536

enum st { S_FREE, S_CONNECT, S_HS, S_GREET, S_SEND, S_RECV, S_IDLE };
enum mode { M_HS, M_RR, M_BULK, M_HOLD };

struct conn {
    int fd;
    SSL *ssl;
    enum st st;
    uint32_t interest;
    double t0;        /* start of the current timed step (connect or request) */
    double deadline;  /* fail the connection if still in this step after it */
    size_t got;       /* bytes of the current expected reply */
    int held;         /* hold mode: counted as held */
    SSL_SESSION *sess;
};

/* options */
static enum mode mode;
static const char *host = "127.0.0.1";
static int port, conc = 32, resume, size = 120, target = 1000, maxfail = 50;
static double duration = 5, warmup = 1, conn_timeout = 10, phase_timeout = 120;
static unsigned long long nbytes = 100ull << 20;
static const char *dir = "down";

static SSL_CTX *ctx;
static int ep;
static struct conn *conns;
static int nconns;
static char req[65536];
static char rbuf[CHUNK];
static unsigned char pattern[PERIOD + CHUNK];

/* counters for the measured window */
static int measuring;
static long count, errors, reused;
static uint32_t *lat;
static size_t nlat, caplat;
static char info[256]; /* protocol, cipher, group, key type of the first connection */
/* hold mode */
static long held, failed, opened;
static long pings_ok;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_self(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void add_lat(double secs) {
    if (!measuring) return;
    if (nlat == caplat) {
        caplat = caplat ? caplat * 2 : 65536;
        lat = realloc(lat, caplat * sizeof *lat);
        if (!lat) abort();
    }
    double us = secs * 1e6;
    lat[nlat++] = us > 4e9 ? 4000000000u : (uint32_t)us;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p) {
    if (!nlat) return -1;
    size_t i = (size_t)(p * (nlat - 1) + 0.5);
    return lat[i] / 1000.0; /* ms */
}

static void set_interest(struct conn *c, uint32_t ev) {
    if (c->interest == ev) return;
    struct epoll_event e = {.events = ev, .data.u32 = (uint32_t)(c - conns)};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
    c->interest = ev;
}

static void close_conn(struct conn *c, int graceful) {
    if (c->ssl) {
        if (graceful) SSL_shutdown(c->ssl); /* sends close_notify; no wait for the peer's */
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd); /* also removes it from the epoll set */
        c->fd = -1;
    }
    c->st = S_FREE;
    c->held = 0;
}

static int start_conn(struct conn *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    c->t0 = now();
    c->deadline = c->t0 + conn_timeout;
    c->got = 0;
    c->st = S_CONNECT;
    c->interest = EPOLLOUT;
    struct epoll_event e = {.events = EPOLLOUT, .data.u32 = (uint32_t)(c - conns)};
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        c->st = S_FREE;
        return -1;
    }
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
    opened++;
    return 0;
}

static void note_info(SSL *ssl) {
    if (info[0]) return;
    const char *grp = "?";
    int nid = SSL_get_negotiated_group(ssl);
    if (nid > 0 && OBJ_nid2sn(nid)) grp = OBJ_nid2sn(nid);
    const char *kt = "?";
    X509 *peer = SSL_get1_peer_certificate(ssl);
    if (peer) {
        EVP_PKEY *pk = X509_get0_pubkey(peer);
        int id = pk ? EVP_PKEY_get_base_id(pk) : 0;
        kt = id == EVP_PKEY_EC ? "EC" : id == EVP_PKEY_RSA ? "RSA" : "other";
        X509_free(peer);
    }
    snprintf(info, sizeof info, "%s %s %s %s", SSL_get_version(ssl),
             SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)), grp, kt);
}

/* Called on an SSL_* result <= 0: sets the interest, or returns -1 for a dead connection. */
static int want(struct conn *c, int r) {
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) { set_interest(c, EPOLLIN); return 0; }
    if (e == SSL_ERROR_WANT_WRITE) { set_interest(c, EPOLLOUT); return 0; }
    ERR_clear_error();
    return -1;
}

static void on_fail(struct conn *c);
static void on_greeted(struct conn *c);
static void on_reply(struct conn *c);

/* Drive one connection as far as it goes without blocking. */
static void advance(struct conn *c) {
    for (;;) {
        switch (c->st) {
        case S_FREE:
            return;
        case S_CONNECT: {
            int err = 0;
            socklen_t l = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
            if (err) { on_fail(c); return; }
            c->ssl = SSL_new(ctx);
            SSL_set_fd(c->ssl, c->fd);
            if (resume && c->sess) SSL_set_session(c->ssl, c->sess);
            c->st = S_HS;
            break;
        }
        case S_HS: {
            int r = SSL_connect(c->ssl);
            if (r == 1) { c->st = S_GREET; c->got = 0; break; }
            if (want(c, r) < 0) on_fail(c);
            return;
        }
        case S_GREET: {
            int r = SSL_read(c->ssl, rbuf, sizeof rbuf);
            if (r <= 0) { if (want(c, r) < 0) on_fail(c); return; }
            if (memchr(rbuf, '\n', (size_t)r)) {
                on_greeted(c);
                /* hs: a new connection in this slot; hold: idle; bulk: the caller takes over */
                if (c->st != S_SEND || mode != M_RR) return;
            }
            break;
        }
        case S_SEND: {
            int r = SSL_write(c->ssl, req, size);
            if (r <= 0) { if (want(c, r) < 0) on_fail(c); return; }
            c->st = S_RECV;
            c->got = 0;
            break;
        }
        case S_RECV: {
            int r = SSL_read(c->ssl, rbuf, sizeof rbuf);
            if (r <= 0) { if (want(c, r) < 0) on_fail(c); return; }
            c->got += (size_t)r;
            if (c->got >= (size_t)size) { on_reply(c); if (c->st != S_SEND) return; }
            break;
        }
        case S_IDLE: {
            /* An idle connection only becomes readable when the peer closes (or sends a
               late ticket): read to find out which. */
            int r = SSL_read(c->ssl, rbuf, sizeof rbuf);
            if (r > 0) continue;
            if (want(c, r) < 0) on_fail(c);
            return;
        }
        }
    }
}

static void on_greeted(struct conn *c) {
    note_info(c->ssl);
    double t = now();
    if (mode == M_HS) {
        if (measuring) {
            count++;
            if (SSL_session_reused(c->ssl)) reused++;
        }
        add_lat(t - c->t0);
        if (resume) {
            if (c->sess) SSL_SESSION_free(c->sess);
            c->sess = SSL_get1_session(c->ssl);
        }
        close_conn(c, 1);
        start_conn(c);
        return;
    }
    if (mode == M_BULK) {
        c->st = S_SEND;
        return;
    }
    if (mode == M_RR) {
        c->st = S_SEND;
        c->t0 = t;
        c->deadline = t + conn_timeout;
        return;
    }
    /* hold */
    c->st = S_IDLE;
    c->held = 1;
    c->deadline = 1e18;
    held++;
    set_interest(c, EPOLLIN);
}

static void on_reply(struct conn *c) {
    double t = now();
    if (mode == M_RR) {
        if (measuring) count++;
        add_lat(t - c->t0);
        c->t0 = t;
        c->deadline = t + conn_timeout;
        c->st = S_SEND;
        return;
    }
    /* hold: a ping answered */
    pings_ok++;
    c->st = S_IDLE;
    c->deadline = 1e18;
    set_interest(c, EPOLLIN);
}

static void on_fail(struct conn *c) {
    if (mode == M_BULK) {
        close_conn(c, 0);
        return;
    }
    if (mode == M_HOLD) {
        if (c->held) held--;
        failed++;
        close_conn(c, 0);
        return;
    }
    if (measuring) errors++;
    close_conn(c, 0);
    start_conn(c);
}

static void expire(double t) {
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        if (c->st != S_FREE && t > c->deadline) on_fail(c);
    }
}

static void loop_once(int ms) {
    struct epoll_event evs[512];
    int n = epoll_wait(ep, evs, 512, ms);
    for (int i = 0; i < n; i++) {
        struct conn *c = &conns[evs[i].data.u32];
        if (c->st != S_FREE) advance(c);
    }
}

static void setup_ctx(void) {
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    /* No client-side cache: a session is only ever offered by explicit SSL_set_session. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (mode == M_HOLD) SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
}

static void print_common(double cpu, double wall) {
    printf("\"client_cpu_s\": %.3f, \"wall_s\": %.3f, \"client_cpu_frac\": %.3f, \"tls\": \"%s\"",
           cpu, wall, wall > 0 ? cpu / wall : 0, info);
}

static int run_timed(void) {
    nconns = conc;
    conns = calloc((size_t)nconns, sizeof *conns);
    for (int i = 0; i < nconns; i++) {
        conns[i].fd = -1;
        if (start_conn(&conns[i]) < 0) { fprintf(stderr, "client: connect failed\n"); return 1; }
    }
    double t0 = now(), tw = t0 + warmup, te = tw + duration, last_exp = t0;
    double cpu0 = 0, tm0 = 0;
    for (;;) {
        double t = now();
        if (!measuring && t >= tw) {
            measuring = 1;
            count = errors = reused = 0;
            nlat = 0;
            cpu0 = cpu_self();
            tm0 = t;
        }
        if (t >= te) break;
        if (t - last_exp > 0.1) { expire(t); last_exp = t; }
        loop_once(20);
    }
    double wall = now() - tm0, cpu = cpu_self() - cpu0;
    qsort(lat, nlat, sizeof *lat, cmp_u32);
    printf("{\"mode\": \"%s\", \"count\": %ld, \"rate\": %.1f, \"errors\": %ld, ",
           mode == M_HS ? "hs" : "rr", count, wall > 0 ? count / wall : 0, errors);
    if (mode == M_HS) printf("\"resumed\": %ld, ", reused);
    printf("\"p50_ms\": %.3f, \"p99_ms\": %.3f, ", pct(0.5), pct(0.99));
    print_common(cpu, wall);
    printf("}\n");
    fflush(stdout);
    for (int i = 0; i < nconns; i++)
        if (conns[i].st != S_FREE) close_conn(&conns[i], 1);
    return 0;
}

/* ---- bulk: one connection driven with poll(), bounded by --timeout ---- */

static int wait_fd(int fd, int ssl_err, double deadline) {
    struct pollfd p = {.fd = fd, .events = ssl_err == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN};
    int ms = (int)((deadline - now()) * 1000);
    if (ms <= 0) return -1;
    return poll(&p, 1, ms) > 0 ? 0 : -1;
}

static int run_bulk(void) {
    for (size_t i = 0; i < sizeof pattern; i++) {
        size_t j = i % PERIOD;
        pattern[i] = (unsigned char)((j * 131u + (j >> 8) * 7u + 13u) & 0xff);
    }
    nconns = 1;
    conns = calloc(1, sizeof *conns);
    struct conn *c = &conns[0];
    c->fd = -1;
    double deadline = now() + phase_timeout;
    if (start_conn(c) < 0) { fprintf(stderr, "client: connect failed\n"); return 1; }
    /* Handshake and greeting through the event loop, then the transfer by hand. */
    while (c->st != S_FREE && c->st != S_SEND && now() < deadline) loop_once(50);
    if (c->st != S_SEND) { fprintf(stderr, "client: bulk: no greeting\n"); return 1; }
    int down = strcmp(dir, "down") == 0;
    char cmd[64];
    int cl = snprintf(cmd, sizeof cmd, "BULK %s %llu\r\n", down ? "DOWN" : "UP", nbytes);
    double cpu0 = cpu_self(), t0 = now();
    unsigned long long moved = 0, bad = 0;
    int r;
    while ((r = SSL_write(c->ssl, cmd, cl)) <= 0) {
        if (wait_fd(c->fd, SSL_get_error(c->ssl, r), deadline) < 0) goto fail;
    }
    if (down) {
        while (moved < nbytes) {
            r = SSL_read(c->ssl, rbuf, sizeof rbuf);
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) goto fail;
                if (wait_fd(c->fd, e, deadline) < 0) goto fail;
                continue;
            }
            size_t off = moved % PERIOD, k = (size_t)r;
            const unsigned char *u = (const unsigned char *)rbuf;
            while (k > 0) {
                size_t m = k < PERIOD - off ? k : PERIOD - off;
                if (memcmp(u, pattern + off, m) != 0)
                    for (size_t i = 0; i < m; i++) bad += u[i] != pattern[off + i];
                u += m;
                k -= m;
                off = 0;
            }
            moved += (unsigned long long)r;
        }
    } else {
        while (moved < nbytes) {
            size_t off = moved % PERIOD, n = CHUNK;
            if (n > nbytes - moved) n = (size_t)(nbytes - moved);
            r = SSL_write(c->ssl, pattern + off, (int)n);
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) goto fail;
                if (wait_fd(c->fd, e, deadline) < 0) goto fail;
                continue;
            }
            moved += (unsigned long long)r;
        }
        /* The sink answers "OK <n> <bad>\r\n" once it has everything. */
        char line[128];
        size_t ll = 0;
        while (ll == 0 || line[ll - 1] != '\n') {
            r = SSL_read(c->ssl, line + ll, (int)(sizeof line - 1 - ll));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) goto fail;
                if (wait_fd(c->fd, e, deadline) < 0) goto fail;
                continue;
            }
            ll += (size_t)r;
            if (ll >= sizeof line - 1) goto fail;
        }
        line[ll] = 0;
        unsigned long long got = 0;
        if (sscanf(line, "OK %llu %llu", &got, &bad) != 2 || got != nbytes) goto fail;
    }
    double wall = now() - t0, cpu = cpu_self() - cpu0;
    printf("{\"mode\": \"bulk\", \"dir\": \"%s\", \"bytes\": %llu, \"bad_bytes\": %llu, "
           "\"ok\": %s, \"mb_s\": %.2f, ",
           down ? "down" : "up", moved, bad, bad == 0 ? "true" : "false", moved / wall / 1e6);
    print_common(cpu, wall);
    printf("}\n");
    fflush(stdout);
    close_conn(c, 1);
    return bad == 0 ? 0 : 1;
fail:
    fprintf(stderr, "client: bulk %s failed after %llu bytes\n", down ? "down" : "up", moved);
    printf("{\"mode\": \"bulk\", \"dir\": \"%s\", \"bytes\": %llu, \"ok\": false}\n",
           down ? "down" : "up", moved);
    return 1;
}

/* ---- hold ---- */

static int count_state(enum st s) {
    int n = 0;
    for (int i = 0; i < nconns; i++) n += conns[i].st == s;
    return n;
}

static int run_hold(void) {
    nconns = target + 1; /* the last slot is for "check" */
    conns = calloc((size_t)nconns, sizeof *conns);
    for (int i = 0; i < nconns; i++) conns[i].fd = -1;
    double t0 = now(), deadline = t0 + phase_timeout, last_exp = t0;
    int next = 0;
    /* Open: keep --conc handshakes in flight until the target, too many failures, or time. */
    while (now() < deadline && failed <= maxfail) {
        int inflight = 0;
        for (int i = 0; i < next; i++) inflight += conns[i].st != S_FREE && conns[i].st != S_IDLE;
        while (next < target && inflight < conc) {
            if (start_conn(&conns[next]) < 0) { failed++; next++; break; }
            next++;
            inflight++;
        }
        if (next >= target && inflight == 0) break;
        double t = now();
        if (t - last_exp > 0.1) { expire(t); last_exp = t; }
        loop_once(20);
    }
    /* Anything still handshaking at this point did not make it. */
    for (int i = 0; i < target; i++)
        if (conns[i].st != S_FREE && conns[i].st != S_IDLE) on_fail(&conns[i]);
    printf("{\"mode\": \"hold\", \"held\": %ld, \"failed\": %ld, \"open_s\": %.3f, \"tls\": \"%s\"}\n",
           held, failed, now() - t0, info);
    fflush(stdout);

    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "ping", 4) == 0) {
            /* One echo round on every held connection, all in flight at once. */
            pings_ok = 0;
            long want_n = 0;
            double t = now();
            mode = M_HOLD;
            for (int i = 0; i < target; i++) {
                struct conn *c = &conns[i];
                if (c->st != S_IDLE) continue;
                c->st = S_SEND;
                c->t0 = t;
                c->deadline = t + conn_timeout;
                want_n++;
                advance(c);
            }
            double dl = t + conn_timeout + 1, le = t;
            while (now() < dl && count_state(S_SEND) + count_state(S_RECV) > 0) {
                double tt = now();
                if (tt - le > 0.2) { expire(tt); le = tt; }
                loop_once(20);
            }
            printf("{\"mode\": \"ping\", \"alive\": %ld, \"asked\": %ld, \"s\": %.3f}\n", pings_ok,
                   want_n, now() - t);
        } else if (strncmp(line, "check", 5) == 0) {
            /* A new client while all the others are held: greeting and one echo. */
            struct conn *c = &conns[target];
            long before = pings_ok;
            double t = now(), dl = t + conn_timeout;
            int ok = 0;
            if (start_conn(c) == 0) {
                while (now() < dl && c->st != S_FREE) {
                    loop_once(20);
                    if (c->st == S_IDLE) {
                        c->st = S_SEND;
                        c->deadline = now() + conn_timeout;
                        advance(c);
                    }
                    if (pings_ok > before) { ok = 1; break; }
                }
            }
            printf("{\"mode\": \"check\", \"ok\": %s, \"ms\": %.1f}\n", ok ? "true" : "false",
                   (now() - t) * 1000);
            if (c->st != S_FREE) { if (c->held) held--; close_conn(c, 1); }
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        }
        fflush(stdout);
    }
    for (int i = 0; i < nconns; i++)
        if (conns[i].st != S_FREE) close_conn(&conns[i], 1);
    return 0;
}

static void usage(void) {
    fprintf(stderr,
            "usage: client hs|rr|bulk|hold --port P [--host H] [--conc N] [--duration S]\n"
            "       [--warmup S] [--resume] [--size B] [--bytes N] [--dir down|up]\n"
            "       [--target N] [--maxfail N] [--conn-timeout S] [--timeout S]\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    if (!strcmp(argv[1], "hs")) mode = M_HS;
    else if (!strcmp(argv[1], "rr")) mode = M_RR;
    else if (!strcmp(argv[1], "bulk")) mode = M_BULK;
    else if (!strcmp(argv[1], "hold")) mode = M_HOLD;
    else usage();
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--resume")) { resume = 1; continue; }
        if (!v) usage();
        i++;
        if (!strcmp(a, "--port")) port = atoi(v);
        else if (!strcmp(a, "--host")) host = v;
        else if (!strcmp(a, "--conc")) conc = atoi(v);
        else if (!strcmp(a, "--duration")) duration = atof(v);
        else if (!strcmp(a, "--warmup")) warmup = atof(v);
        else if (!strcmp(a, "--size")) size = atoi(v);
        else if (!strcmp(a, "--bytes")) nbytes = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--dir")) dir = v;
        else if (!strcmp(a, "--target")) target = atoi(v);
        else if (!strcmp(a, "--maxfail")) maxfail = atoi(v);
        else if (!strcmp(a, "--conn-timeout")) conn_timeout = atof(v);
        else if (!strcmp(a, "--timeout")) phase_timeout = atof(v);
        else usage();
    }
    if (!port || conc < 1 || size < 3 || size > (int)sizeof req) usage();
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* An IMAP-shaped request: "a0001 UID FETCH ..." padded to --size, ending in CRLF. */
    memset(req, 'x', sizeof req);
    const char *head = "a0001 UID FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE) ";
    memcpy(req, head, strlen(head) < (size_t)size - 2 ? strlen(head) : (size_t)size - 2);
    req[size - 2] = '\r';
    req[size - 1] = '\n';
    ep = epoll_create1(0);
    setup_ctx();
    switch (mode) {
    case M_HS:
    case M_RR: return run_timed();
    case M_BULK: return run_bulk();
    case M_HOLD: return run_hold();
    }
    return 2;
}
