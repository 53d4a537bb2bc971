/* udp-echo PORT: answers every UDP datagram with the same bytes, to the
 * sender. The lab's test image carries it because Debian's static busybox
 * has no UDP server (no udpsvd) and its nc is TCP-only. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: udp-echo PORT\n");
        return 2;
    }
    char *end = NULL;
    long port = strtol(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || port < 1 || port > 65535) {
        fprintf(stderr, "udp-echo: bad port %s\n", argv[1]);
        return 2;
    }
    int sock = socket(AF_INET, SOCK_DGRAM, 0);
    if (sock < 0) { perror("socket"); return 1; }
    struct sockaddr_in address;
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons((unsigned short)port);
    address.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(sock, (struct sockaddr *)&address, sizeof address) < 0) { perror("bind"); return 1; }
    char buffer[65536];
    for (;;) {
        struct sockaddr_in peer;
        socklen_t peer_length = sizeof peer;
        ssize_t length = recvfrom(sock, buffer, sizeof buffer, 0, (struct sockaddr *)&peer, &peer_length);
        if (length < 0) continue;
        sendto(sock, buffer, (size_t)length, 0, (struct sockaddr *)&peer, peer_length);
    }
}
