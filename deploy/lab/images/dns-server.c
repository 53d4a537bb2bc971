/* dns-server ADDRESS [PORT]: a DNS server for tests that answers every
 * standard query for an A record of any name with the one IPv4 ADDRESS,
 * on PORT (default 53) over UDP and TCP (RFC 1035 4.2.2: each message
 * preceded by its 2-byte length). Queries of any other type get an empty
 * NOERROR answer (the name exists, without records of that type); no name
 * is ever NXDOMAIN. Other opcodes get NOTIMP. Anything that is not a
 * well-formed query with exactly one question is dropped without an answer.
 *
 * The lab's test image carries it as /bin/dns-server, to stand in for a
 * cluster DNS: Debian's static busybox has no DNS server. Every TCP
 * connection is served by a child process (at most MAX_CONNECTIONS at a
 * time), which gives up after IDLE_SECONDS without a complete message. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

enum {
    HEADER_SIZE = 12,
    /* A name in wire form: labels with their length bytes and the root. */
    MAX_NAME = 255,
    MAX_LABEL = 63,
    /* The largest UDP answer without EDNS (RFC 1035 2.3.4). */
    UDP_ANSWER_LIMIT = 512,
    MAX_CONNECTIONS = 64,
    IDLE_SECONDS = 10,
    TTL_SECONDS = 30,
    TYPE_A = 1,
    TYPE_ANY = 255,
    CLASS_IN = 1,
    CLASS_ANY = 255,
    RCODE_NOTIMP = 4,
    /* The answer record after the question: name (a pointer to the
     * question's), type, class, TTL, length, 4 address bytes. */
    A_RECORD_SIZE = 2 + 2 + 2 + 4 + 2 + 4,
};

static struct in_addr answer_address;
static volatile sig_atomic_t connections;

static uint16_t read16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static void write16(uint8_t *p, uint16_t value) {
    p[0] = (uint8_t)(value >> 8);
    p[1] = (uint8_t)value;
}

/* Writes the answer to the `length` bytes of `query` into `out` (room for
 * `capacity` bytes); returns its length, or 0 when the query gets none. */
static size_t answer(const uint8_t *query, size_t length, uint8_t *out, size_t capacity) {
    if (length < HEADER_SIZE || capacity < HEADER_SIZE) return 0;
    uint16_t flags = read16(query + 2);
    if (flags & 0x8000) return 0; /* QR: a response, not a query */
    unsigned opcode = (flags >> 11) & 0xF;
    uint16_t recursion_desired = flags & 0x0100;
    memset(out, 0, HEADER_SIZE);
    memcpy(out, query, 2); /* the ID */
    if (opcode != 0) {
        write16(out + 2, (uint16_t)(0x8000 | opcode << 11 | recursion_desired | RCODE_NOTIMP));
        return HEADER_SIZE;
    }
    if (read16(query + 4) != 1) return 0; /* QDCOUNT: one question, always, in practice */

    /* The question's name: uncompressed labels up to the root label. */
    size_t offset = HEADER_SIZE;
    size_t name_size = 0;
    for (;;) {
        if (offset >= length) return 0;
        uint8_t label = query[offset];
        if (label == 0) break;
        if (label > MAX_LABEL) return 0; /* a pointer or an extended label type */
        name_size += 1u + label;
        if (name_size + 1 > MAX_NAME) return 0;
        offset += 1u + label;
    }
    offset += 1; /* the root label */
    if (length - offset < 4) return 0; /* QTYPE, QCLASS (offset <= length here) */
    uint16_t type = read16(query + offset);
    uint16_t class = read16(query + offset + 2);
    size_t question_end = offset + 4;
    size_t question_size = question_end - HEADER_SIZE;

    int has_record = (type == TYPE_A || type == TYPE_ANY) && (class == CLASS_IN || class == CLASS_ANY);
    size_t size = question_end + (has_record ? A_RECORD_SIZE : 0);
    if (size > capacity) return 0;
    /* QR, opcode 0, AA, RD as asked; RA and RCODE 0 (NOERROR). */
    write16(out + 2, (uint16_t)(0x8000 | 0x0400 | recursion_desired));
    write16(out + 4, 1);
    write16(out + 6, has_record ? 1 : 0);
    memcpy(out + HEADER_SIZE, query + HEADER_SIZE, question_size);
    if (has_record) {
        uint8_t *record = out + question_end;
        write16(record, 0xC000 | HEADER_SIZE); /* the question's name */
        write16(record + 2, TYPE_A);
        write16(record + 4, CLASS_IN);
        write16(record + 6, 0);
        write16(record + 8, TTL_SECONDS);
        write16(record + 10, 4);
        memcpy(record + 12, &answer_address.s_addr, 4); /* network order already */
    }
    return size;
}

/* Reads exactly `size` bytes; 0 on success, -1 on EOF, error or timeout. */
static int read_exactly(int fd, uint8_t *buffer, size_t size) {
    size_t done = 0;
    while (done < size) {
        ssize_t n = read(fd, buffer + done, size - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        done += (size_t)n;
    }
    return 0;
}

static int write_all(int fd, const uint8_t *buffer, size_t size) {
    size_t done = 0;
    while (done < size) {
        ssize_t n = send(fd, buffer + done, size - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        done += (size_t)n;
    }
    return 0;
}

/* One TCP connection: messages until the peer closes or idles. */
static void serve_tcp(int fd) {
    struct timeval idle = {.tv_sec = IDLE_SECONDS, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &idle, sizeof idle);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &idle, sizeof idle);
    static uint8_t query[65535];
    static uint8_t reply[2 + 65535];
    for (;;) {
        uint8_t prefix[2];
        if (read_exactly(fd, prefix, 2) < 0) return;
        size_t length = read16(prefix);
        if (read_exactly(fd, query, length) < 0) return;
        size_t size = answer(query, length, reply + 2, sizeof reply - 2);
        if (size == 0) continue; /* dropped, as over UDP */
        write16(reply, (uint16_t)size);
        if (write_all(fd, reply, size + 2) < 0) return;
    }
}

static void reap(int signal_number) {
    (void)signal_number;
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0) connections--;
    errno = saved;
}

static int bound_socket(int type, long port) {
    int sock = socket(AF_INET, type, 0);
    if (sock < 0) { perror("socket"); exit(1); }
    int on = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    struct sockaddr_in address;
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons((unsigned short)port);
    address.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(sock, (struct sockaddr *)&address, sizeof address) < 0) { perror("bind"); exit(1); }
    return sock;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: dns-server IPV4-ADDRESS [PORT]\n");
        return 2;
    }
    if (inet_pton(AF_INET, argv[1], &answer_address) != 1) {
        fprintf(stderr, "dns-server: bad IPv4 address %s\n", argv[1]);
        return 2;
    }
    long port = 53;
    if (argc == 3) {
        char *end = NULL;
        port = strtol(argv[2], &end, 10);
        if (end == argv[2] || *end != '\0' || port < 1 || port > 65535) {
            fprintf(stderr, "dns-server: bad port %s\n", argv[2]);
            return 2;
        }
    }

    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = reap;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &action, NULL);
    signal(SIGPIPE, SIG_IGN);

    int udp = bound_socket(SOCK_DGRAM, port);
    /* Non-blocking: a connection reset between poll and accept must not
     * stall the UDP side (accepted sockets block again). */
    int tcp = bound_socket(SOCK_STREAM | SOCK_NONBLOCK, port);
    if (listen(tcp, 64) < 0) { perror("listen"); return 1; }
    fprintf(stderr, "dns-server: every A query answered with %s, port %ld, UDP and TCP\n", argv[1], port);

    static uint8_t query[65536];
    uint8_t reply[UDP_ANSWER_LIMIT];
    struct pollfd fds[2] = {{.fd = udp, .events = POLLIN}, {.fd = tcp, .events = POLLIN}};
    for (;;) {
        if (poll(fds, 2, -1) < 0) continue; /* EINTR: a child ended */
        if (fds[0].revents & POLLIN) {
            struct sockaddr_in peer;
            socklen_t peer_length = sizeof peer;
            ssize_t length = recvfrom(udp, query, sizeof query, MSG_DONTWAIT, (struct sockaddr *)&peer, &peer_length);
            if (length > 0) {
                size_t size = answer(query, (size_t)length, reply, sizeof reply);
                if (size > 0) sendto(udp, reply, size, 0, (struct sockaddr *)&peer, peer_length);
            }
        }
        if (fds[1].revents & POLLIN) {
            int connection = accept(tcp, NULL, NULL);
            if (connection < 0) continue;
            if (connections >= MAX_CONNECTIONS) { close(connection); continue; }
            sigset_t block, old;
            sigemptyset(&block);
            sigaddset(&block, SIGCHLD);
            sigprocmask(SIG_BLOCK, &block, &old); /* count the child before it can be reaped */
            pid_t child = fork();
            if (child == 0) {
                sigprocmask(SIG_SETMASK, &old, NULL);
                close(udp);
                close(tcp);
                serve_tcp(connection);
                _exit(0);
            }
            if (child > 0) connections++;
            sigprocmask(SIG_SETMASK, &old, NULL);
            close(connection);
        }
    }
}
