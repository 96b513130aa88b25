/* A TLS 1.3 client that downloads while asking for KeyUpdates.
 *
 *     keyupdate_client PORT BYTES EVERY
 *
 * Connects to 127.0.0.1:PORT, reads BYTES bytes of plaintext (slowly enough that the server's
 * socket fills and its writes wait), and after every EVERY bytes sends a
 * KeyUpdate(update_requested), which the server must answer with its own KeyUpdate while its
 * download is in flight. Prints "ok N" and exits 0 once BYTES arrived; "error ..." and 1 if the
 * connection broke first.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int fail(const char *what) {
    unsigned long e = ERR_get_error();
    printf("error %s: %s\n", what, e ? ERR_reason_error_string(e) : "connection closed");
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: keyupdate_client PORT BYTES EVERY\n");
        return 2;
    }
    long total = atol(argv[2]), every = atol(argv[3]), got = 0, next = every;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 16384;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("connect");
        return 1;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) != 1)
        return fail("handshake");
    char buf[4096];
    struct timespec pause = {0, 200000}; /* 0.2 ms per read: the server's writes back up */
    while (got < total) {
        int n = SSL_read(ssl, buf, sizeof buf);
        if (n <= 0)
            return fail("read");
        got += n;
        if (got >= next) {
            next += every;
            if (SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED) != 1 || SSL_do_handshake(ssl) != 1)
                return fail("key update");
        }
        nanosleep(&pause, NULL);
    }
    printf("ok %ld\n", got);
    SSL_shutdown(ssl);
    close(fd);
    return 0;
}
