/* streamgen: a compiled SSE load generator and paced SSE upstream for the streaming capacity ramp.
 *
 * Why C: at 500+ concurrent streams paced 50 ms apart the Python probe and the Python fake upstream
 * miss their own pacing (bench/RESULTS.md), so the ramp measured the harness, not the gateways. This is
 * one single-threaded epoll loop per mode, a few microseconds per event, so the gateway is what runs
 * out first. bench/run.py compiles it (cc -O2) into the bench cache; nothing built is committed.
 *
 *   streamgen server PORT SCRIPT DELAY_MS
 *       Answers every HTTP/1.1 request on PORT with the response in SCRIPT: a head, then its events,
 *       the first with the head and each next one DELAY_MS later. SCRIPT is u32 count, then per
 *       piece u32 length + bytes (piece 0 = the head; bench/run.py writes it from the Python fake,
 *       so the bytes are exactly what the fake upstream sends). Keep-alive; many connections.
 *
 *   streamgen client PORT REQUEST STREAMS DURATION_S STAGGER_S
 *       STREAMS connections each send REQUEST (raw HTTP/1.1 bytes from a file) back to back for
 *       DURATION_S, starts spread over STAGGER_S, and read chunked SSE responses. Prints one JSON
 *       object: streams, complete, errors, events, ttfb_ms[], headers_ms[], gaps_ms[] (same meaning
 *       as bench/probes.py StreamStats), error_samples[].
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static void nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ---- growable buffers ------------------------------------------------------------------------ */

typedef struct {
    double *v;
    size_t n, cap;
} dvec;

static void dpush(dvec *a, double x) {
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 1024;
        a->v = realloc(a->v, a->cap * sizeof(double));
    }
    a->v[a->n++] = x;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(n + 1);
    if (fread(buf, 1, n, f) != (size_t)n) die("read");
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

/* ==== server ==================================================================================== */

typedef struct {
    char *data;
    uint32_t len;
} piece;

static piece *pieces;
static uint32_t npieces;
static double delay_s;

typedef struct sconn {
    int fd;
    char in[65536];
    size_t inlen;
    int next;       /* next piece to send; 0 = idle (waiting for a request) */
    double due;     /* when the next piece is due */
    int queued;     /* in the pacing queue */
    struct sconn *qnext;
} sconn;

/* Every stream is paced by the same delay, so due times are appended in order: a FIFO is a heap. */
static sconn *qhead, *qtail;

static void enqueue(sconn *c, double due) {
    c->due = due;
    c->queued = 1;
    c->qnext = NULL;
    if (qtail) qtail->qnext = c; else qhead = c;
    qtail = c;
}

static void sclose(int ep, sconn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    if (!c->queued) free(c); /* queued ones are freed when they reach the head */
}

static int send_all(int fd, const char *p, size_t n) {
    /* Events are small; a full socket buffer here means the reader stalled: treat as a broken peer. */
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                struct timespec ts = {0, 200000};
                nanosleep(&ts, NULL);
                continue;
            }
            return -1;
        }
        p += w;
        n -= w;
    }
    return 0;
}

/* A complete request in c->in? Returns its length or 0. */
static size_t request_len(sconn *c) {
    char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
    if (!end) return 0;
    size_t head = end - c->in + 4, body = 0;
    char *cl = memmem(c->in, head, "ontent-length:", 14);
    if (!cl) cl = memmem(c->in, head, "ONTENT-LENGTH:", 14);
    if (cl) body = strtoul(cl + 14, NULL, 10);
    return c->inlen >= head + body ? head + body : 0;
}

static void start_response(int ep, sconn *c) {
    size_t n = request_len(c);
    if (!n) return;
    memmove(c->in, c->in + n, c->inlen - n);
    c->inlen -= n;
    /* head + first event in one write, as the Python fake does */
    if (send_all(c->fd, pieces[0].data, pieces[0].len) || (npieces > 1 && send_all(c->fd, pieces[1].data, pieces[1].len))) {
        sclose(ep, c);
        return;
    }
    c->next = 2;
    if (c->next < (int)npieces) enqueue(c, now_s() + delay_s);
    else c->next = 0;
}

__attribute__((noreturn)) static void run_server(int port, const char *script, double delay_ms) {
    size_t len;
    char *raw = read_file(script, &len);
    npieces = *(uint32_t *)raw;
    pieces = calloc(npieces, sizeof(piece));
    size_t off = 4;
    for (uint32_t i = 0; i < npieces; i++) {
        pieces[i].len = *(uint32_t *)(raw + off);
        pieces[i].data = raw + off + 4;
        off += 4 + pieces[i].len;
    }
    delay_s = delay_ms / 1000.0;

    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&addr, sizeof addr)) die("bind");
    if (listen(ls, 4096)) die("listen");
    nonblock(ls);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    printf("streamgen server on 127.0.0.1:%d (%u pieces, %.1f ms apart)\n", port, npieces, delay_ms);
    fflush(stdout);

    struct epoll_event events[256];
    for (;;) {
        int timeout = -1;
        if (qhead) {
            double wait = qhead->due - now_s();
            timeout = wait > 0 ? (int)(wait * 1000) + 1 : 0;
        }
        int n = epoll_wait(ep, events, 256, timeout);
        for (int i = 0; i < n; i++) {
            sconn *c = events[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept(ls, NULL, NULL)) >= 0) {
                    nonblock(fd);
                    nodelay(fd);
                    sconn *nc = calloc(1, sizeof(sconn));
                    nc->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            if (c->fd < 0) continue;
            ssize_t r = recv(c->fd, c->in + c->inlen, sizeof c->in - c->inlen, 0);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                sclose(ep, c);
                continue;
            }
            c->inlen += r;
            if (c->next == 0) start_response(ep, c);
        }
        double t = now_s();
        while (qhead && qhead->due <= t) {
            sconn *c = qhead;
            qhead = c->qnext;
            if (!qhead) qtail = NULL;
            c->queued = 0;
            if (c->fd < 0) {
                free(c);
                continue;
            }
            if (send_all(c->fd, pieces[c->next].data, pieces[c->next].len)) {
                sclose(ep, c);
                continue;
            }
            if (++c->next < (int)npieces) {
                enqueue(c, c->due + delay_s);
            } else {
                c->next = 0;
                start_response(ep, c); /* a pipelined next request */
            }
        }
    }
}

/* ==== client ==================================================================================== */

enum { C_WAIT_START, C_HEAD, C_BODY };

typedef struct {
    int fd;
    int state;
    double start_at, t0, last_event;
    int chunked, status, done, events;
    long content_left;
    /* chunked decoding */
    long chunk_left;
    int skip_crlf;
    char *buf;      /* raw bytes not yet consumed */
    size_t blen, bcap;
    char *sse;      /* decoded body bytes not yet split into events */
    size_t slen, scap;
} cconn;

static const char *request;
static size_t request_n;
static int port_g;
static double deadline;
static long streams_n, complete_n, errors_n, events_n;
static dvec ttfb, heads, gaps;
static char samples[5][160];
static int nsamples;

static void note_error(const char *what) {
    errors_n++;
    if (nsamples < 5) snprintf(samples[nsamples++], sizeof samples[0], "%s", what);
}

static void append(char **b, size_t *len, size_t *cap, const char *p, size_t n) {
    if (*len + n > *cap) {
        *cap = (*len + n) * 2 + 4096;
        *b = realloc(*b, *cap);
    }
    memcpy(*b + *len, p, n);
    *len += n;
}

static void cconnect(int ep, cconn *c) {
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    nonblock(c->fd);
    nodelay(c->fd);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port_g)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connect(c->fd, (struct sockaddr *)&addr, sizeof addr); /* EINPROGRESS: the first send waits */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void cdrop(int ep, cconn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->blen = c->slen = 0;
}

static void begin(cconn *c) {
    c->t0 = now_s();
    c->state = C_HEAD;
    c->chunked = c->status = c->done = c->events = 0;
    c->content_left = -1;
    c->chunk_left = 0;
    c->skip_crlf = 0;
    c->slen = 0;
    if (send(c->fd, request, request_n, MSG_NOSIGNAL) != (ssize_t)request_n) {
        /* connecting: retried when the socket becomes writable */
        c->state = C_WAIT_START;
    }
}

static void end_stream(int ep, cconn *c, double t) {
    streams_n++;
    if (c->status != 200) {
        char m[64];
        snprintf(m, sizeof m, "HTTP %d", c->status);
        note_error(m);
    } else if (!c->events) {
        note_error("stream without data events");
    } else {
        events_n += c->events;
        if (c->done) complete_n++;
        else note_error("stream ended without data: [DONE]");
    }
    (void)ep;
    if (t < deadline) begin(c);
    else c->state = -1;
}

/* Split decoded SSE bytes into events; record a timestamp per data event. */
static void sse_events(cconn *c, double t) {
    size_t start = 0;
    for (;;) {
        char *sep = memmem(c->sse + start, c->slen - start, "\n\n", 2);
        if (!sep) break;
        char *ev = c->sse + start;
        size_t evlen = sep - ev;
        char *line = memmem(ev, evlen, "data:", 5);
        if (line) {
            char *p = line + 5;
            while (*p == ' ') p++;
            if (!strncmp(p, "[DONE]", 6)) {
                c->done = 1;
            } else {
                if (c->events == 0) dpush(&ttfb, (t - c->t0) * 1e3);
                else dpush(&gaps, (t - c->last_event) * 1e3);
                c->last_event = t;
                c->events++;
            }
        }
        start = sep - c->sse + 2;
    }
    memmove(c->sse, c->sse + start, c->slen - start);
    c->slen -= start;
}

/* Consume c->buf; returns 1 when the response ended. */
static int consume(cconn *c, double t) {
    size_t off = 0;
    if (c->state == C_HEAD) {
        char *end = memmem(c->buf, c->blen, "\r\n\r\n", 4);
        if (!end) return 0;
        dpush(&heads, (t - c->t0) * 1e3);
        c->status = atoi(c->buf + 9);
        size_t hlen = end - c->buf + 4;
        if (memmem(c->buf, hlen, "chunked", 7)) c->chunked = 1;
        char *cl = strcasestr(c->buf, "content-length:");
        if (cl && cl < end) c->content_left = strtol(cl + 15, NULL, 10);
        off = hlen;
        c->state = C_BODY;
    }
    while (off < c->blen) {
        if (!c->chunked) {
            size_t take = c->blen - off;
            if (c->content_left >= 0 && (long)take > c->content_left) take = c->content_left;
            append(&c->sse, &c->slen, &c->scap, c->buf + off, take);
            off += take;
            if (c->content_left >= 0) {
                c->content_left -= take;
                if (c->content_left == 0) {
                    sse_events(c, t);
                    c->blen = 0;
                    return 1;
                }
            }
            continue;
        }
        if (c->chunk_left) {
            size_t take = c->blen - off;
            if ((long)take > c->chunk_left) take = c->chunk_left;
            append(&c->sse, &c->slen, &c->scap, c->buf + off, take);
            off += take;
            c->chunk_left -= take;
            if (!c->chunk_left) c->skip_crlf = 1;
            continue;
        }
        if (c->skip_crlf) {
            if (c->blen - off < 2) break;
            off += 2;
            c->skip_crlf = 0;
            continue;
        }
        char *eol = memmem(c->buf + off, c->blen - off, "\r\n", 2);
        if (!eol) break;
        long size = strtol(c->buf + off, NULL, 16);
        if (size == 0) {
            char *tail = memmem(eol + 2, c->buf + c->blen - (eol + 2), "\r\n", 2);
            if (!tail) break;
            sse_events(c, t);
            size_t used = tail + 2 - c->buf;
            memmove(c->buf, c->buf + used, c->blen - used);
            c->blen -= used;
            return 1;
        }
        c->chunk_left = size;
        off = eol + 2 - c->buf;
    }
    sse_events(c, t);
    memmove(c->buf, c->buf + off, c->blen - off);
    c->blen -= off;
    return 0;
}

static int run_client(int port, const char *reqfile, int nstreams, double duration, double stagger) {
    port_g = port;
    request = read_file(reqfile, &request_n);
    int ep = epoll_create1(0);
    cconn *conns = calloc(nstreams, sizeof(cconn));
    double t_start = now_s();
    deadline = t_start + duration;
    double hard = deadline + 60;
    for (int i = 0; i < nstreams; i++) {
        conns[i].fd = -1;
        conns[i].state = C_WAIT_START;
        conns[i].start_at = t_start + stagger * i / nstreams;
    }
    int started = 0, active = nstreams;
    struct epoll_event events[512];
    char rbuf[65536];
    while (active > 0) {
        double t = now_s();
        if (t > hard) {
            note_error("probe hit its hard time limit (streams hung)");
            break;
        }
        while (started < nstreams && conns[started].start_at <= t) {
            cconnect(ep, &conns[started]);
            conns[started].t0 = t;
            started++;
        }
        int timeout = 10;
        if (started < nstreams) {
            double w = conns[started].start_at - t;
            timeout = w > 0 ? (int)(w * 1000) : 0;
            if (timeout > 10) timeout = 10;
        }
        int n = epoll_wait(ep, events, 512, timeout);
        t = now_s();
        for (int i = 0; i < n; i++) {
            cconn *c = events[i].data.ptr;
            if (c->fd < 0 || c->state < 0) continue;
            if (c->state == C_WAIT_START && (events[i].events & EPOLLOUT)) {
                begin(c);
                if (c->state == C_WAIT_START) {
                    int err = 0;
                    socklen_t el = sizeof err;
                    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                    if (err) {
                        char m[96];
                        snprintf(m, sizeof m, "connect: %s", strerror(err));
                        streams_n++;
                        note_error(m);
                        cdrop(ep, c);
                        if (t < deadline) cconnect(ep, c); else { c->state = -1; active--; }
                    }
                }
            }
            if (!(events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            for (;;) {
                ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
                if (r < 0 && errno == EAGAIN) break;
                if (r <= 0) {
                    if (c->state == C_HEAD || c->state == C_BODY) {
                        streams_n++;
                        note_error(c->state == C_HEAD ? "server closed before the response head"
                                                      : "server closed the connection mid-stream");
                    }
                    cdrop(ep, c);
                    if (t < deadline) {
                        cconnect(ep, c);
                        c->state = C_WAIT_START;
                    } else {
                        c->state = -1;
                        active--;
                    }
                    break;
                }
                append(&c->buf, &c->blen, &c->bcap, rbuf, r);
                while (c->state == C_HEAD || c->state == C_BODY) {
                    if (!consume(c, t)) break;
                    end_stream(ep, c, t);
                    if (c->state < 0) {
                        cdrop(ep, c);
                        active--;
                        break;
                    }
                }
                if (c->fd < 0) break;
            }
        }
    }
    printf("{\"streams\":%ld,\"complete\":%ld,\"errors\":%ld,\"events\":%ld", streams_n, complete_n, errors_n, events_n);
    dvec *arrs[] = {&ttfb, &heads, &gaps};
    const char *names[] = {"ttfb_ms", "headers_ms", "gaps_ms"};
    for (int a = 0; a < 3; a++) {
        printf(",\"%s\":[", names[a]);
        for (size_t i = 0; i < arrs[a]->n; i++) printf(i ? ",%.3f" : "%.3f", arrs[a]->v[i]);
        printf("]");
    }
    printf(",\"error_samples\":[");
    for (int i = 0; i < nsamples; i++) printf(i ? ",\"%s\"" : "\"%s\"", samples[i]);
    printf("]}\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && !strcmp(argv[1], "server")) run_server(atoi(argv[2]), argv[3], atof(argv[4]));
    if (argc == 7 && !strcmp(argv[1], "client"))
        return run_client(atoi(argv[2]), argv[3], atoi(argv[4]), atof(argv[5]), atof(argv[6]));
    fprintf(stderr,
            "usage: streamgen server PORT SCRIPT DELAY_MS\n"
            "       streamgen client PORT REQUEST STREAMS DURATION_S STAGGER_S\n");
    return 2;
}
