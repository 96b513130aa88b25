/* Plaintext backend for the tlswrap benchmark: one thread, epoll, level-triggered.
 *
 * Every accepted connection gets an IMAP-like greeting line at once. Then:
 *   - a first line "BULK DOWN <n>\r\n": the backend sends n bytes of the pattern (see
 *     pattern_byte below) and keeps the connection open until the peer closes;
 *   - a first line "BULK UP <n>\r\n": the backend reads n bytes, checks them against the
 *     pattern and answers "OK <n> <mismatched-bytes>\r\n";
 *   - anything else: every byte is echoed back (the kept-alive request/response load).
 *
 * Usage: backend PORT [HOST]   (prints "READY <port>" on stdout once listening; PORT 0 picks one)
 * The Python twin (backend.py) speaks the same protocol and is the fallback without gcc.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define GREETING "* OK [CAPABILITY IMAP4rev1] tlswrap-bench ready\r\n"
#define BUFSZ 65536
/* The bulk pattern repeats every PERIOD bytes; a prime, so a slip by any offset shows. */
#define PERIOD 65521

enum state { FIRST, ECHO, DOWN, UP };

struct conn {
    int fd;
    enum state st;
    char head[64];        /* first-line accumulator */
    size_t headlen;
    char *pend;           /* bytes still to write (echo or reply) */
    size_t pendlen, pendoff, pendcap;
    uint64_t total, done, bad; /* bulk: bytes to move, moved, mismatched */
};

static unsigned char pattern[PERIOD + BUFSZ];
static char rbuf[BUFSZ];
static int ep;

static void set_interest(struct conn *c, uint32_t ev) {
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

static void drop(struct conn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->pend);
    free(c);
}

/* Queue bytes after whatever is pending; the caller then tries flush(). */
static void queue(struct conn *c, const char *p, size_t n) {
    if (c->pendoff == c->pendlen) c->pendoff = c->pendlen = 0;
    if (c->pendlen + n > c->pendcap) {
        size_t cap = c->pendcap ? c->pendcap : 4096;
        while (cap < c->pendlen + n) cap *= 2;
        c->pend = realloc(c->pend, cap);
        if (!c->pend) abort();
        c->pendcap = cap;
    }
    memcpy(c->pend + c->pendlen, p, n);
    c->pendlen += n;
}

/* Returns -1 on a dead socket, 0 when everything pending is written, 1 when blocked. */
static int flush(struct conn *c) {
    while (c->pendoff < c->pendlen) {
        ssize_t w = send(c->fd, c->pend + c->pendoff, c->pendlen - c->pendoff, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN) return 1;
            if (errno == EINTR) continue;
            return -1;
        }
        c->pendoff += (size_t)w;
    }
    return 0;
}

/* Bulk source: write pattern bytes until the total is sent or the socket blocks. */
static int pump_down(struct conn *c) {
    while (c->done < c->total) {
        size_t off = c->done % PERIOD;
        size_t n = BUFSZ;
        if (n > c->total - c->done) n = c->total - c->done;
        ssize_t w = send(c->fd, pattern + off, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN) return 1;
            if (errno == EINTR) continue;
            return -1;
        }
        c->done += (uint64_t)w;
    }
    return 0;
}

static void start_mode(struct conn *c) {
    unsigned long long n = 0;
    char dir[8] = {0};
    c->head[c->headlen] = 0;
    if (sscanf(c->head, "BULK %7s %llu", dir, &n) == 2 && strcmp(dir, "DOWN") == 0) {
        c->st = DOWN;
        c->total = n;
    } else if (sscanf(c->head, "BULK %7s %llu", dir, &n) == 2 && strcmp(dir, "UP") == 0) {
        c->st = UP;
        c->total = n;
    } else {
        c->st = ECHO;
    }
}

static void on_up_bytes(struct conn *c, const char *p, size_t n) {
    const unsigned char *u = (const unsigned char *)p;
    while (n > 0 && c->done < c->total) {
        size_t off = c->done % PERIOD;
        size_t k = n;
        if (k > PERIOD - off) k = PERIOD - off;
        if (k > c->total - c->done) k = c->total - c->done;
        if (memcmp(u, pattern + off, k) != 0) {
            for (size_t i = 0; i < k; i++) c->bad += u[i] != pattern[off + i];
        }
        c->done += k;
        u += k;
        n -= k;
    }
    if (c->done == c->total && c->total > 0) {
        char line[96];
        int len = snprintf(line, sizeof line, "OK %llu %llu\r\n",
                           (unsigned long long)c->done, (unsigned long long)c->bad);
        queue(c, line, (size_t)len);
        c->total = 0; /* answered; further bytes are ignored */
    }
}

static void on_readable(struct conn *c) {
    for (int spins = 0; spins < 16; spins++) {
        ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
        if (r == 0) { drop(c); return; }
        if (r < 0) {
            if (errno == EAGAIN) break;
            if (errno == EINTR) continue;
            drop(c);
            return;
        }
        const char *p = rbuf;
        size_t n = (size_t)r;
        if (c->st == FIRST) {
            /* Decide the mode from the first line; a non-BULK prefix means echo at once. */
            size_t take = 0;
            while (take < n && c->headlen < sizeof c->head - 1) {
                char ch = p[take++];
                c->head[c->headlen++] = ch;
                if (ch == '\n') break;
            }
            int is_bulk = strncmp(c->head, "BULK ", c->headlen < 5 ? c->headlen : 5) == 0;
            int complete = c->head[c->headlen - 1] == '\n' || c->headlen == sizeof c->head - 1;
            if (!is_bulk) {
                c->st = ECHO;
                queue(c, c->head, c->headlen);
            } else if (complete) {
                start_mode(c);
            }
            p += take;
            n -= take;
        }
        if (c->st == ECHO && n > 0) queue(c, p, n);
        else if (c->st == UP && n > 0) on_up_bytes(c, p, n);
        /* DOWN ignores anything the peer sends. */
        int f = flush(c);
        if (f < 0) { drop(c); return; }
        if (c->st == DOWN) {
            int d = pump_down(c);
            if (d < 0) { drop(c); return; }
            if (d == 1) { set_interest(c, EPOLLIN | EPOLLOUT); return; }
        }
        if (f == 1) {
            /* Back-pressure: stop reading until the peer drains what we owe it. */
            set_interest(c, EPOLLOUT);
            return;
        }
        if ((size_t)r < sizeof rbuf) break;
    }
}

static void on_writable(struct conn *c) {
    int f = flush(c);
    if (f < 0) { drop(c); return; }
    if (f == 1) return;
    if (c->st == DOWN) {
        int d = pump_down(c);
        if (d < 0) { drop(c); return; }
        if (d == 1) return;
    }
    set_interest(c, EPOLLIN);
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 0;
    const char *host = argc > 2 ? argv[2] : "127.0.0.1";
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    for (size_t i = 0; i < sizeof pattern; i++) {
        size_t j = i % PERIOD;
        pattern[i] = (unsigned char)((j * 131u + (j >> 8) * 7u + 13u) & 0xff);
    }
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 4096) < 0) {
        perror("backend: bind/listen");
        return 1;
    }
    socklen_t sl = sizeof sa;
    getsockname(ls, (struct sockaddr *)&sa, &sl);
    printf("READY %d\n", ntohs(sa.sin_port));
    fflush(stdout);

    ep = epoll_create1(0);
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &e);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("backend: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                for (int k = 0; k < 256; k++) {
                    int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
                    if (fd < 0) break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    if (!c) abort();
                    c->fd = fd;
                    c->st = FIRST;
                    queue(c, GREETING, sizeof GREETING - 1);
                    if (flush(c) < 0) { close(fd); free(c->pend); free(c); continue; }
                    struct epoll_event ce = {.events = c->pendoff < c->pendlen ? EPOLLOUT : EPOLLIN,
                                             .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
                }
                continue;
            }
            if (evs[i].events & EPOLLOUT) on_writable(c);
            else if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
        }
    }
}
