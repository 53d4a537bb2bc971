/* netpol-agent: the server and the prober of the NetworkPolicy truth-table
 * tests (what upstream's agnhost does for its netpol suite).
 *
 *   netpol-agent serve PORT...
 *       listens on TCP and UDP on every PORT: TCP connections are accepted
 *       and closed, UDP datagrams are echoed to their sender.
 *   netpol-agent probe tcp|udp PORT TIMEOUT_MS ADDRESS...
 *       tries every ADDRESS at once and prints one line per address,
 *       "ADDRESS ok" (connected / answered) or "ADDRESS fail", in order.
 *   netpol-agent sink PORT
 *       accepts TCP connections one after another and reads them to the
 *       end, discarding the bytes (the receiving end of blast).
 *   netpol-agent blast ADDRESS PORT SECONDS
 *       one TCP connection, written to as fast as it takes for SECONDS;
 *       prints "BYTES bytes SECONDS s MBIT Mbit/s".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PORTS 16
#define MAX_TARGETS 256

static int parse_port(const char *text) {
    char *end = NULL;
    long port = strtol(text, &end, 10);
    if (end == text || *end != '\0' || port < 1 || port > 65535) {
        fprintf(stderr, "netpol-agent: bad port %s\n", text);
        exit(2);
    }
    return (int)port;
}

static int bound(int type, int port) {
    int sock = socket(AF_INET, type, 0);
    if (sock < 0) { perror("socket"); exit(1); }
    int one = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address;
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons((unsigned short)port);
    address.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(sock, (struct sockaddr *)&address, sizeof address) < 0) { perror("bind"); exit(1); }
    if (type == SOCK_STREAM && listen(sock, 128) < 0) { perror("listen"); exit(1); }
    return sock;
}

static int serve(int count, char **ports) {
    struct pollfd fds[2 * MAX_PORTS];
    int types[2 * MAX_PORTS];
    int n = 0;
    if (count < 1 || count > MAX_PORTS) {
        fprintf(stderr, "netpol-agent serve: 1 to %d ports\n", MAX_PORTS);
        return 2;
    }
    for (int i = 0; i < count; i++) {
        int port = parse_port(ports[i]);
        fds[n].fd = bound(SOCK_STREAM, port); fds[n].events = POLLIN; types[n++] = SOCK_STREAM;
        fds[n].fd = bound(SOCK_DGRAM, port); fds[n].events = POLLIN; types[n++] = SOCK_DGRAM;
    }
    char buffer[2048];
    for (;;) {
        if (poll(fds, (nfds_t)n, -1) < 0) {
            if (errno == EINTR) continue;
            perror("poll");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            if (!(fds[i].revents & POLLIN)) continue;
            if (types[i] == SOCK_STREAM) {
                int client = accept(fds[i].fd, NULL, NULL);
                if (client >= 0) close(client);
            } else {
                struct sockaddr_in peer;
                socklen_t length = sizeof peer;
                ssize_t got = recvfrom(fds[i].fd, buffer, sizeof buffer, 0,
                                       (struct sockaddr *)&peer, &length);
                if (got >= 0) {
                    sendto(fds[i].fd, buffer, (size_t)got, 0, (struct sockaddr *)&peer, length);
                }
            }
        }
    }
}

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

static int probe(const char *protocol, const char *port_text, const char *timeout_text,
                 int count, char **targets) {
    int tcp = strcmp(protocol, "tcp") == 0;
    if (!tcp && strcmp(protocol, "udp") != 0) {
        fprintf(stderr, "netpol-agent probe: tcp or udp, not %s\n", protocol);
        return 2;
    }
    int port = parse_port(port_text);
    long timeout = strtol(timeout_text, NULL, 10);
    if (timeout < 1 || count < 1 || count > MAX_TARGETS) {
        fprintf(stderr, "netpol-agent probe: bad timeout or number of addresses\n");
        return 2;
    }
    struct pollfd fds[MAX_TARGETS];
    int done[MAX_TARGETS];
    int ok[MAX_TARGETS];
    for (int i = 0; i < count; i++) {
        done[i] = 0;
        ok[i] = 0;
        struct sockaddr_in address;
        memset(&address, 0, sizeof address);
        address.sin_family = AF_INET;
        address.sin_port = htons((unsigned short)port);
        if (inet_pton(AF_INET, targets[i], &address.sin_addr) != 1) {
            fprintf(stderr, "netpol-agent probe: bad address %s\n", targets[i]);
            return 2;
        }
        int sock = socket(AF_INET, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK, 0);
        if (sock < 0) { perror("socket"); return 1; }
        fds[i].fd = sock;
        int rc = connect(sock, (struct sockaddr *)&address, sizeof address);
        if (tcp) {
            if (rc == 0) { done[i] = 1; ok[i] = 1; }
            else if (errno != EINPROGRESS) { done[i] = 1; }
            fds[i].events = POLLOUT;
        } else {
            if (rc != 0 || send(sock, "probe", 5, 0) != 5) done[i] = 1;
            fds[i].events = POLLIN;
        }
        if (done[i]) fds[i].fd = -sock - 1;
    }
    long deadline = now_ms() + timeout;
    for (;;) {
        int pending = 0;
        for (int i = 0; i < count; i++) pending += !done[i];
        long left = deadline - now_ms();
        if (pending == 0 || left <= 0) break;
        if (poll(fds, (nfds_t)count, (int)left) < 0 && errno != EINTR) { perror("poll"); return 1; }
        for (int i = 0; i < count; i++) {
            if (done[i] || fds[i].revents == 0) continue;
            if (tcp) {
                int error = 0;
                socklen_t length = sizeof error;
                getsockopt(fds[i].fd, SOL_SOCKET, SO_ERROR, &error, &length);
                ok[i] = error == 0 && (fds[i].revents & POLLOUT);
            } else {
                char buffer[64];
                ok[i] = recv(fds[i].fd, buffer, sizeof buffer, 0) > 0;
            }
            done[i] = 1;
            fds[i].fd = -fds[i].fd - 1;
        }
    }
    for (int i = 0; i < count; i++) printf("%s %s\n", targets[i], ok[i] ? "ok" : "fail");
    return 0;
}

static int sink(const char *port_text) {
    int listener = bound(SOCK_STREAM, parse_port(port_text));
    static char buffer[1 << 16];
    for (;;) {
        int client = accept(listener, NULL, NULL);
        if (client < 0) continue;
        while (read(client, buffer, sizeof buffer) > 0) {}
        close(client);
    }
    return 0;
}

static int blast(const char *address_text, const char *port_text, const char *seconds_text) {
    struct sockaddr_in address;
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons((unsigned short)parse_port(port_text));
    if (inet_pton(AF_INET, address_text, &address.sin_addr) != 1) {
        fprintf(stderr, "netpol-agent blast: bad address %s\n", address_text);
        return 2;
    }
    long seconds = strtol(seconds_text, NULL, 10);
    if (seconds < 1) { fprintf(stderr, "netpol-agent blast: bad seconds\n"); return 2; }
    int sock = socket(AF_INET, SOCK_STREAM, 0);
    if (sock < 0 || connect(sock, (struct sockaddr *)&address, sizeof address) < 0) {
        perror("connect");
        return 1;
    }
    static char buffer[1 << 16];
    memset(buffer, 'x', sizeof buffer);
    long start = now_ms(), end = start + seconds * 1000L;
    unsigned long long sent = 0;
    while (now_ms() < end) {
        ssize_t wrote = write(sock, buffer, sizeof buffer);
        if (wrote <= 0) { perror("write"); return 1; }
        sent += (unsigned long long)wrote;
    }
    double elapsed = (double)(now_ms() - start) / 1000.0;
    close(sock);
    printf("%llu bytes %.3f s %.1f Mbit/s\n", sent, elapsed, (double)sent * 8.0 / elapsed / 1e6);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "sink") == 0) return sink(argv[2]);
    if (argc == 5 && strcmp(argv[1], "blast") == 0) return blast(argv[2], argv[3], argv[4]);
    if (argc >= 3 && strcmp(argv[1], "serve") == 0) return serve(argc - 2, argv + 2);
    if (argc >= 6 && strcmp(argv[1], "probe") == 0)
        return probe(argv[2], argv[3], argv[4], argc - 5, argv + 5);
    fprintf(stderr,
            "usage: netpol-agent serve PORT...\n"
            "       netpol-agent probe tcp|udp PORT TIMEOUT_MS ADDRESS...\n"
            "       netpol-agent sink PORT\n"
            "       netpol-agent blast ADDRESS PORT SECONDS\n");
    return 2;
}
