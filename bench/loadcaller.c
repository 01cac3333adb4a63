/*
 * A light AudioSocket load caller: N calls to one server, timed as Asterisk would see them.
 *
 *   loadcaller --port P [--host 127.0.0.1] [--calls N] [--seconds S] [--warmup W]
 *              [--speak] [--uuids FILE]
 *
 * One process, one epoll loop, one shared 20 ms timerfd (CLOCK_MONOTONIC). Each call sends the
 * UUID message (kind 0x01, length 16) first, then one 320 B kind 0x10 frame per tick: silence,
 * or with --speak a 440 Hz tone for 1 s then 1 s of silence (phase spread over the calls), so a
 * VAD hears a talking caller. Every received AudioSocket message is parsed (kind, big-endian
 * length); each audio frame's arrival is stamped with CLOCK_MONOTONIC right after the recv()
 * that completed it. After the warm-up, arrivals are kept for S seconds, then one JSON object
 * is printed on stdout.
 *
 * Definitions (per call, over the frames that arrived inside the window):
 *   gap_i        = arrival_i - arrival_{i-1}
 *   lateness_i   = max(0, gap_i - 20 ms): how much later than its period a frame came, which is
 *                  what a peer without a jitter buffer turns into a gap in the outgoing RTP.
 *   burst        = gap_i < 5 ms: two frames almost together (the second is played early).
 *   drift_i      = arrival_i - (arrival_0 + i * 20 ms): the frame's distance from an ideal
 *                  grid anchored at the first frame; a server that sleeps 20 ms per frame drifts
 *                  (grows without bound), a deadline ticker stays near 0.
 *   deficit      = frames real time should have carried minus frames received: expected is
 *                  the call's first-to-last span in whole 20 ms periods, plus any silence of
 *                  more than a period at the window's start or end (so a call that stalls
 *                  counts). Summed over the calls, never negative, in % of the expected
 *                  frames. It is what Asterisk plays as missing audio.
 *   gap          = gap_i >= 30 ms: the frame came half a period or more late, which a peer
 *                  without a jitter buffer plays as a hole; if no frame was lost, the deficit
 *                  stays 0. (A drifting server has a deficit without gaps: every frame is a
 *                  little late.)
 * Global p50/p99/max pool every call's values.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define FRAME 320
#define MSG (3 + FRAME)
#define PERIOD_NS 20000000LL
#define BURST_NS 5000000LL
#define GAP_NS 30000000LL /* 1.5 periods between two frames: the peer had a hole to play */
#define BUF 65536

typedef struct {
    int fd;
    unsigned char uuid[16];
    unsigned char in[BUF];
    size_t have;
    int64_t *arrivals; /* ns, inside the window */
    size_t n, cap;
    int dropped;       /* closed by the server before the end, without a hang-up */
    int hangup;        /* received kind 0x00 */
    int protocol_error;
    long send_blocked; /* our frames the socket would not take */
    long voiced;       /* frames in the window that were not all zero: the bot was speaking */
} Call;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "loadcaller: %s: %s\n", what, strerror(errno));
    exit(2);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double pct_ms(int64_t *sorted, size_t n, double q) {
    if (n == 0) return NAN;
    size_t i = (size_t)(q * (double)n);
    if (i >= n) i = n - 1;
    return (double)sorted[i] / 1e6;
}

static void print_num(const char *key, double v, const char *sep) {
    if (isnan(v))
        printf("\"%s\": null%s", key, sep);
    else
        printf("\"%s\": %.3f%s", key, v, sep);
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One UUID per line, hyphens allowed; missing lines get random ones. */
static void load_uuids(Call *calls, int n, const char *path) {
    FILE *f = path ? fopen(path, "r") : NULL;
    if (path && !f) die("open --uuids");
    int urandom = open("/dev/urandom", O_RDONLY);
    char line[128];
    for (int c = 0; c < n; c++) {
        int got = 0;
        if (f && fgets(line, sizeof line, f)) {
            int hi = -1;
            for (char *p = line; *p && got < 16; p++) {
                int v = hexval(*p);
                if (v < 0) continue;
                if (hi < 0) {
                    hi = v;
                } else {
                    calls[c].uuid[got++] = (unsigned char)(hi << 4 | v);
                    hi = -1;
                }
            }
        }
        if (got < 16) {
            if (read(urandom, calls[c].uuid, 16) != 16) die("read /dev/urandom");
            calls[c].uuid[6] = (calls[c].uuid[6] & 0x0f) | 0x40; /* a version-4 UUID */
            calls[c].uuid[8] = (calls[c].uuid[8] & 0x3f) | 0x80;
        }
    }
    if (f) fclose(f);
    close(urandom);
}

static void record(Call *c, int64_t t) {
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 1024;
        c->arrivals = realloc(c->arrivals, c->cap * sizeof *c->arrivals);
        if (!c->arrivals) die("realloc");
    }
    c->arrivals[c->n++] = t;
}

/* Parse whole messages from the call's buffer; audio frames in the window are stamped `t`. */
static void parse(Call *c, int64_t t, int64_t w0, int64_t w1) {
    size_t off = 0;
    while (c->have - off >= 3) {
        unsigned kind = c->in[off];
        size_t len = (size_t)c->in[off + 1] << 8 | c->in[off + 2];
        if (c->have - off < 3 + len) break;
        if (kind == 0x00) {
            c->hangup = 1;
        } else if (kind >= 0x10 && kind <= 0x18) {
            if (t >= w0 && t < w1) {
                record(c, t);
                for (size_t i = 0; i < len; i++) {
                    if (c->in[off + 3 + i]) {
                        c->voiced++;
                        break;
                    }
                }
            }
        } else {
            c->protocol_error = 1; /* Asterisk would hang up on anything else */
        }
        off += 3 + len;
    }
    memmove(c->in, c->in + off, c->have - off);
    c->have -= off;
}

static long periods(int64_t ns) { return (long)llround((double)ns / (double)PERIOD_NS); }

/* Frames the call should have received in the window: the span from its first to its last
 * frame in whole periods (exact despite jitter, unlike counting slots between the window's
 * edges, where a frame a few ms late falls in or out), plus any silence longer than a period
 * at either edge (a server that stalls at the end must not look perfect). */
static long expected_frames(const Call *c, int64_t w0, int64_t w1) {
    if (c->n == 0) return periods(w1 - w0);
    long n = periods(c->arrivals[c->n - 1] - c->arrivals[0]) + 1;
    long head = periods(c->arrivals[0] - w0), tail = periods(w1 - c->arrivals[c->n - 1]);
    return n + (head > 1 ? head - 1 : 0) + (tail > 1 ? tail - 1 : 0);
}

static void fill_speech(unsigned char *msg, long tick, int call) {
    /* 1 s of tone, 1 s of silence, each call shifted so they do not all start together. */
    long phase = (tick + call * 7) % 100;
    msg[0] = 0x10;
    msg[1] = FRAME >> 8;
    msg[2] = FRAME & 0xff;
    for (int i = 0; i < FRAME / 2; i++) {
        int16_t s = 0;
        if (phase < 50) {
            double k = (double)(tick * (FRAME / 2) + i);
            s = (int16_t)(8000.0 * sin(2.0 * M_PI * 440.0 * k / 8000.0));
        }
        msg[3 + 2 * i] = (unsigned char)(s & 0xff); /* s16le */
        msg[4 + 2 * i] = (unsigned char)((s >> 8) & 0xff);
    }
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadcaller --port P [--host H] [--calls N] [--seconds S] [--warmup W] "
            "[--speak] [--uuids FILE]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *uuids = NULL;
    int port = 0, ncalls = 20, speak = 0;
    double seconds = 10.0, warmup = 2.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--speak")) speak = 1;
        else if (!strcmp(a, "--host") && more) host = argv[++i];
        else if (!strcmp(a, "--port") && more) port = atoi(argv[++i]);
        else if (!strcmp(a, "--calls") && more) ncalls = atoi(argv[++i]);
        else if (!strcmp(a, "--seconds") && more) seconds = atof(argv[++i]);
        else if (!strcmp(a, "--warmup") && more) warmup = atof(argv[++i]);
        else if (!strcmp(a, "--uuids") && more) uuids = argv[++i];
        else usage();
    }
    if (port <= 0 || ncalls <= 0 || seconds <= 0) usage();

    Call *calls = calloc((size_t)ncalls, sizeof *calls);
    if (!calls) die("calloc");
    load_uuids(calls, ncalls, uuids);

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    if (getaddrinfo(host, portstr, &hints, &ai)) {
        fprintf(stderr, "loadcaller: cannot resolve %s\n", host);
        return 2;
    }
    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    int connected = 0;
    for (int c = 0; c < ncalls; c++) {
        int fd = socket(ai->ai_family, SOCK_STREAM, 0);
        if (fd < 0) die("socket");
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            calls[c].fd = -1;
            calls[c].dropped = 1;
            close(fd);
            continue;
        }
        unsigned char hello[19] = {0x01, 0x00, 0x10};
        memcpy(hello + 3, calls[c].uuid, 16);
        if (send(fd, hello, sizeof hello, MSG_NOSIGNAL) != (ssize_t)sizeof hello) {
            calls[c].fd = -1;
            calls[c].dropped = 1;
            close(fd);
            continue;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        calls[c].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
        connected++;
    }
    freeaddrinfo(ai);

    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    if (tfd < 0) die("timerfd_create");
    int64_t t0 = now_ns();
    struct itimerspec its = {
        .it_interval = {0, PERIOD_NS},
        .it_value = {(time_t)((t0 + PERIOD_NS) / 1000000000LL),
                     (long)((t0 + PERIOD_NS) % 1000000000LL)},
    };
    if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0) die("timerfd_settime");
    struct epoll_event tev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev) < 0) die("epoll_ctl timer");

    int64_t w0 = t0 + (int64_t)(warmup * 1e9), w1 = w0 + (int64_t)(seconds * 1e9);
    long tick = 0, timer_overruns = 0;
    int64_t timer_late_max = 0;
    unsigned char silence[MSG] = {0x10, FRAME >> 8, FRAME & 0xff};
    unsigned char speech[MSG];
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    int measuring = 0;
    struct epoll_event evs[256];

    for (;;) {
        int64_t now = now_ns();
        if (!measuring && now >= w0) {
            getrusage(RUSAGE_SELF, &ru0);
            measuring = 1;
        }
        if (now >= w1) break;
        int timeout_ms = (int)((w1 - now) / 1000000LL) + 1;
        int n = epoll_wait(ep, evs, 256, timeout_ms);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int e = 0; e < n; e++) {
            uint32_t id = evs[e].data.u32;
            if (id == UINT32_MAX) {
                uint64_t fired = 0;
                if (read(tfd, &fired, sizeof fired) != sizeof fired) continue;
                int64_t t = now_ns();
                int64_t due = t0 + (tick + (int64_t)fired) * PERIOD_NS;
                if (t - due > timer_late_max && t >= w0) timer_late_max = t - due;
                if (fired > 1 && t >= w0) timer_overruns += (long)fired - 1;
                tick += (long)fired;
                for (int c = 0; c < ncalls; c++) {
                    if (calls[c].fd < 0) continue;
                    const unsigned char *msg = silence;
                    if (speak) {
                        fill_speech(speech, tick, c);
                        msg = speech;
                    }
                    ssize_t w = send(calls[c].fd, msg, MSG, MSG_NOSIGNAL | MSG_DONTWAIT);
                    if (w != MSG) calls[c].send_blocked++;
                }
                continue;
            }
            Call *c = &calls[id];
            if (c->fd < 0) continue;
            for (;;) {
                ssize_t r = recv(c->fd, c->in + c->have, BUF - c->have, 0);
                int64_t t = now_ns();
                if (r > 0) {
                    c->have += (size_t)r;
                    parse(c, t, w0, w1);
                    if (c->have == BUF) c->have = 0; /* a message longer than a buffer */
                    continue;
                }
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
                /* EOF or reset before the end, without a hang-up message: a lost call */
                if (t < w1 && !c->hangup) c->dropped = 1;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
                break;
            }
        }
    }
    getrusage(RUSAGE_SELF, &ru1);
    for (int c = 0; c < ncalls; c++)
        if (calls[c].fd >= 0) close(calls[c].fd);

    /* --- figures --- */
    size_t total = 0;
    for (int c = 0; c < ncalls; c++) total += calls[c].n;
    int64_t *late = malloc((total + 1) * sizeof *late);
    int64_t *drift = malloc((total + 1) * sizeof *drift);
    int64_t *one = malloc((total + 1) * sizeof *one);
    if (!late || !drift || !one) die("malloc");
    size_t nl = 0, nd = 0;
    long bursts = 0, gaps = 0, expected_total = 0, deficit_total = 0, received_total = 0;
    int dropped = 0, hangups = 0, protocol_errors = 0;
    long send_blocked = 0, voiced = 0;

    printf("{\"calls\": %d, \"connected\": %d, \"seconds\": %.3f, \"warmup\": %.3f, "
           "\"speak\": %s, \"per_call\": [",
           ncalls, connected, seconds, warmup, speak ? "true" : "false");
    for (int ci = 0; ci < ncalls; ci++) {
        Call *c = &calls[ci];
        size_t m = 0;
        long b = 0, g = 0;
        for (size_t i = 1; i < c->n; i++) {
            int64_t gap = c->arrivals[i] - c->arrivals[i - 1];
            int64_t l = gap > PERIOD_NS ? gap - PERIOD_NS : 0;
            late[nl++] = l;
            one[m++] = l;
            if (gap < BURST_NS) b++;
            if (gap >= GAP_NS) g++;
        }
        for (size_t i = 0; i < c->n; i++)
            drift[nd++] = c->arrivals[i] - (c->arrivals[0] + (int64_t)i * PERIOD_NS);
        long def = expected_frames(c, w0, w1) - (long)c->n;
        bursts += b;
        gaps += g;
        expected_total += def + (long)c->n;
        deficit_total += def;
        received_total += (long)c->n;
        dropped += c->dropped;
        hangups += c->hangup;
        protocol_errors += c->protocol_error;
        send_blocked += c->send_blocked;
        voiced += c->voiced;
        qsort(one, m, sizeof *one, cmp_i64);
        printf("%s{\"frames\": %zu, \"gaps\": %ld, ", ci ? ", " : "", c->n, g);
        print_num("lateness_p99_ms", pct_ms(one, m, 0.99), ", ");
        print_num("lateness_max_ms", m ? (double)one[m - 1] / 1e6 : NAN, ", ");
        printf("\"deficit_frames\": %ld, \"bursts\": %ld, \"dropped\": %s}", def, b,
               c->dropped ? "true" : "false");
    }
    qsort(late, nl, sizeof *late, cmp_i64);
    qsort(drift, nd, sizeof *drift, cmp_i64);
    double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec -
                          ru0.ru_stime.tv_sec) +
                 (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec -
                          ru0.ru_stime.tv_usec) /
                     1e6;
    printf("], ");
    print_num("lateness_p50_ms", pct_ms(late, nl, 0.50), ", ");
    print_num("lateness_p99_ms", pct_ms(late, nl, 0.99), ", ");
    print_num("lateness_max_ms", nl ? (double)late[nl - 1] / 1e6 : NAN, ", ");
    print_num("drift_p50_ms", pct_ms(drift, nd, 0.50), ", ");
    print_num("drift_p99_ms", pct_ms(drift, nd, 0.99), ", ");
    print_num("drift_max_ms", nd ? (double)drift[nd - 1] / 1e6 : NAN, ", ");
    if (deficit_total < 0) deficit_total = 0;
    print_num("deficit_pct", expected_total ? 100.0 * (double)deficit_total / (double)expected_total
                                            : NAN,
              ", ");
    printf("\"frames_expected\": %ld, \"frames_received\": %ld, \"bursts\": %ld, \"gaps\": %ld, "
           "\"dropped\": %d, \"hangups\": %d, \"protocol_errors\": %d, \"send_blocked\": %ld, "
           "\"voiced_frames\": %ld, ",
           expected_total, received_total, bursts, gaps, dropped, hangups, protocol_errors,
           send_blocked, voiced);
    print_num("caller_cpu_pct", 100.0 * cpu / seconds, ", ");
    print_num("caller_timer_late_max_ms", (double)timer_late_max / 1e6, ", ");
    printf("\"caller_timer_overruns\": %ld}\n", timer_overruns);
    return 0;
}
