/* A TLS 1.3 client that asks for KeyUpdates while data flows.
 *
 *     keyupdate_client PORT BYTES EVERY          (download)
 *     keyupdate_client PORT BYTES EVERY up       (upload, then download)
 *
 * Download: connects to 127.0.0.1:PORT, reads BYTES bytes of plaintext (slowly enough that the
 * server's socket fills and its writes wait), and after every EVERY bytes sends a
 * KeyUpdate(update_requested), which the server must answer with its own KeyUpdate while its
 * download is in flight. Prints "ok N" and exits 0 once BYTES arrived.
 *
 * Upload: reads nothing at first; sends a KeyUpdate(update_requested) and then BYTES bytes,
 * with another request after every EVERY bytes, while the server's replies queue behind
 * whatever the server sent meanwhile. Then reads until the server's close_notify and prints
 * "ok SENT RECEIVED keyupdates K", K being the KeyUpdate messages received from the server.
 *
 * Either way "error ..." and exit 1 if the connection broke first.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define KEY_UPDATE 24 /* the TLS 1.3 handshake message type */

static long keyupdates_received;

static int fail(const char *what) {
    unsigned long e = ERR_get_error();
    printf("error %s: %s\n", what, e ? ERR_reason_error_string(e) : "connection closed");
    return 1;
}

static void on_message(int write_p, int version, int content_type, const void *buf, size_t len,
                       SSL *ssl, void *arg) {
    (void)version, (void)ssl, (void)arg;
    if (!write_p && content_type == SSL3_RT_HANDSHAKE && len > 0 &&
        ((const unsigned char *)buf)[0] == KEY_UPDATE)
        keyupdates_received++;
}

static int key_update(SSL *ssl) {
    return SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED) == 1 && SSL_do_handshake(ssl) == 1;
}

static int upload(SSL *ssl, long total, long every) {
    char buf[16384];
    memset(buf, 'u', sizeof buf);
    long sent = 0, next = every, got = 0;
    if (!key_update(ssl))
        return fail("key update");
    while (sent < total) {
        int n = SSL_write(ssl, buf, total - sent < (long)sizeof buf ? (int)(total - sent)
                                                                    : (int)sizeof buf);
        if (n <= 0)
            return fail("write");
        sent += n;
        if (sent >= next && sent < total) {
            next += every;
            if (!key_update(ssl))
                return fail("key update");
        }
    }
    for (;;) {
        int n = SSL_read(ssl, buf, sizeof buf);
        if (n <= 0) {
            if (SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN)
                break;
            return fail("read");
        }
        got += n;
    }
    printf("ok %ld %ld keyupdates %ld\n", sent, got, keyupdates_received);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4 && !(argc == 5 && strcmp(argv[4], "up") == 0)) {
        fprintf(stderr, "usage: keyupdate_client PORT BYTES EVERY [up]\n");
        return 2;
    }
    long total = atol(argv[2]), every = atol(argv[3]), got = 0, next = every;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 16384;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("connect");
        return 1;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_msg_callback(ssl, on_message);
    if (SSL_connect(ssl) != 1)
        return fail("handshake");
    if (argc == 5)
        return upload(ssl, total, every);
    char buf[4096];
    struct timespec pause = {0, 200000}; /* 0.2 ms per read: the server's writes back up */
    while (got < total) {
        int n = SSL_read(ssl, buf, sizeof buf);
        if (n <= 0)
            return fail("read");
        got += n;
        if (got >= next) {
            next += every;
            if (!key_update(ssl))
                return fail("key update");
        }
        nanosleep(&pause, NULL);
    }
    printf("ok %ld\n", got);
    SSL_shutdown(ssl);
    close(fd);
    return 0;
}
