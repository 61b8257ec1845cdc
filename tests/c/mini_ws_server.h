/*
 * A one-connection WebSocket server on 127.0.0.1 for the C tests: it answers
 * the upgrade (any path, any auth), counts the data frames it reads and
 * records the close code of the client's close frame (-1 when the
 * connection ended without one), then replies with a close frame. Every
 * socket wait is bounded (WAIT_MS).
 */
#ifndef FAL_RT_MINI_WS_SERVER_H
#define FAL_RT_MINI_WS_SERVER_H

#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* SHA-1 (RFC 3174), for Sec-WebSocket-Accept. */
static void mini_sha1(const unsigned char *msg, size_t len, unsigned char out[20]) {
    uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
    size_t total = ((len + 8) / 64 + 1) * 64;
    unsigned char *buf = (unsigned char *)calloc(total, 1);
    if (buf == NULL) abort();
    memcpy(buf, msg, len);
    buf[len] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) buf[total - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)buf[off + 4 * i] << 24 | (uint32_t)buf[off + 4 * i + 1] << 16 |
                   (uint32_t)buf[off + 4 * i + 2] << 8 | (uint32_t)buf[off + 4 * i + 3];
        for (int i = 16; i < 80; i++) {
            uint32_t x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16];
            w[i] = x << 1 | x >> 31;
        }
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) {
                f = (b & c) | (~b & d);
                k = 0x5A827999u;
            } else if (i < 40) {
                f = b ^ c ^ d;
                k = 0x6ED9EBA1u;
            } else if (i < 60) {
                f = (b & c) | (b & d) | (c & d);
                k = 0x8F1BBCDCu;
            } else {
                f = b ^ c ^ d;
                k = 0xCA62C1D6u;
            }
            uint32_t t = (a << 5 | a >> 27) + f + e + k + w[i];
            e = d;
            d = c;
            c = b << 30 | b >> 2;
            b = a;
            a = t;
        }
        h[0] += a;
        h[1] += b;
        h[2] += c;
        h[3] += d;
        h[4] += e;
    }
    free(buf);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (unsigned char)(h[i] >> (24 - 8 * j));
}

static void mini_base64(const unsigned char *in, size_t len, char *out) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < len ? in[i + 2] : 0);
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        out[o++] = i + 1 < len ? t[v >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? t[v & 63] : '=';
    }
    out[o] = '\0';
}

typedef struct mini_ws_server {
    int listen_fd;
    int port;
    pthread_t thread;
    /* Guarded by r.mu: r.results = data frames read, r.closes = 1 once the
     * connection ended, r.last_close_code = the client's close code or -1. */
    recorder r;
} mini_ws_server;

static int mini_read_full(int fd, unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t got = recv(fd, p, n, 0);
        if (got <= 0) return 0;
        p += got;
        n -= (size_t)got;
    }
    return 1;
}

static void mini_serve(mini_ws_server *s, int fd) {
    char req[4096];
    size_t have = 0;
    req[0] = '\0';
    while (have < sizeof req - 1 && !strstr(req, "\r\n\r\n")) {
        ssize_t got = recv(fd, req + have, sizeof req - 1 - have, 0);
        if (got <= 0) return;
        have += (size_t)got;
        req[have] = '\0';
    }
    /* Header names in any case: search a lower-cased copy. */
    char lower[4096];
    for (size_t i = 0; i <= have; i++)
        lower[i] = (req[i] >= 'A' && req[i] <= 'Z') ? (char)(req[i] - 'A' + 'a') : req[i];
    const char *lk = strstr(lower, "sec-websocket-key:");
    if (lk == NULL) return;
    const char *k = req + (lk - lower) + strlen("sec-websocket-key:");
    while (*k == ' ') k++;
    char key[128];
    size_t kl = strcspn(k, "\r\n");
    if (kl > 64) return;
    snprintf(key, sizeof key, "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", (int)kl, k);
    unsigned char digest[20];
    mini_sha1((const unsigned char *)key, strlen(key), digest);
    char accept[32];
    mini_base64(digest, sizeof digest, accept);
    char resp[256];
    int rl = snprintf(resp, sizeof resp,
                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                      accept);
    if (send(fd, resp, (size_t)rl, MSG_NOSIGNAL) != rl) return;
    for (;;) {
        unsigned char hdr[2];
        if (!mini_read_full(fd, hdr, 2)) return;
        int opcode = hdr[0] & 0x0f;
        uint64_t len = hdr[1] & 0x7f;
        unsigned char ext[8];
        if (len == 126) {
            if (!mini_read_full(fd, ext, 2)) return;
            len = (uint64_t)ext[0] << 8 | ext[1];
        } else if (len == 127) {
            if (!mini_read_full(fd, ext, 8)) return;
            len = 0;
            for (int i = 0; i < 8; i++) len = len << 8 | ext[i];
        }
        unsigned char mask[4] = {0, 0, 0, 0};
        if ((hdr[1] & 0x80) && !mini_read_full(fd, mask, 4)) return;
        if (len > 65536) return;
        unsigned char payload[65536];
        if (!mini_read_full(fd, payload, (size_t)len)) return;
        for (uint64_t i = 0; i < len; i++) payload[i] ^= mask[i % 4];
        if (opcode == 8) {
            int code = len >= 2 ? payload[0] << 8 | payload[1] : 1005;
            pthread_mutex_lock(&s->r.mu);
            s->r.last_close_code = code;
            pthread_mutex_unlock(&s->r.mu);
            unsigned char reply[4] = {0x88, 2, (unsigned char)(code >> 8), (unsigned char)code};
            (void)send(fd, reply, len >= 2 ? 4 : 2, MSG_NOSIGNAL);
            return;
        }
        if (opcode == 1 || opcode == 2 || opcode == 0) {
            pthread_mutex_lock(&s->r.mu);
            s->r.results++;
            pthread_cond_broadcast(&s->r.cv);
            pthread_mutex_unlock(&s->r.mu);
        }
    }
}

static void *mini_server_main(void *arg) {
    mini_ws_server *s = (mini_ws_server *)arg;
    struct pollfd p = {s->listen_fd, POLLIN, 0};
    if (poll(&p, 1, WAIT_MS) == 1) {
        int fd = accept(s->listen_fd, NULL, NULL);
        if (fd >= 0) {
            struct timeval tv = {WAIT_MS / 1000, 0};
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            mini_serve(s, fd);
            close(fd);
        }
    }
    pthread_mutex_lock(&s->r.mu);
    s->r.closes = 1;
    pthread_cond_broadcast(&s->r.cv);
    pthread_mutex_unlock(&s->r.mu);
    return NULL;
}

/* Listen on 127.0.0.1 (a free port) and serve one connection on a thread. */
static int mini_server_start(mini_ws_server *s) {
    memset(s, 0, sizeof *s);
    recorder_init(&s->r);
    s->r.last_close_code = -1;
    s->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (s->listen_fd < 0) return 0;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (bind(s->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->listen_fd, 4) != 0 ||
        getsockname(s->listen_fd, (struct sockaddr *)&a, &al) != 0)
        return 0;
    s->port = ntohs(a.sin_port);
    return pthread_create(&s->thread, NULL, mini_server_main, s) == 0;
}

/* Wait for the connection to end and the thread to exit. */
static void mini_server_stop(mini_ws_server *s) {
    (void)wait_for(&s->r, &s->r.closes, 1);
    pthread_join(s->thread, NULL);
    close(s->listen_fd);
    recorder_destroy(&s->r);
}

/* A client for the server: key auth (no token endpoint). */
static fal_rt_client *mini_server_client(const mini_ws_server *s) {
    char run_host[64];
    snprintf(run_host, sizeof run_host, "ws://127.0.0.1:%d", s->port);
    fal_rt_client_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.key = "test-key";
    o.run_host = run_host;
    o.rest_url = "http://127.0.0.1:1";
    o.allow_insecure = true;
    o.token_retries = -1;
    fal_rt_client *c = NULL;
    return fal_rt_client_new(&o, &c, NULL) == FAL_RT_OK ? c : NULL;
}

#endif
