/* tcpblast: the overlay benchmark's static TCP sender and sink (no libc resolver needed).
 *   tcpblast -l PORT             accept connections forever, discard what arrives
 *   tcpblast IPV4 PORT MBYTES    send MBYTES of zeros, print Gbit/s to stdout */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static char buf[1 << 20];

int main(int argc, char **argv) {
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    if (argc == 3 && strcmp(argv[1], "-l") == 0) {
        int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        a.sin_port = htons(atoi(argv[2]));
        if (bind(s, (void *)&a, sizeof a) || listen(s, 8)) { perror("listen"); return 1; }
        for (;;) {
            int c = accept(s, 0, 0);
            if (c < 0) continue;
            while (read(c, buf, sizeof buf) > 0) {}
            close(c);
        }
    }
    if (argc != 4) { fprintf(stderr, "usage: tcpblast -l PORT | tcpblast IPV4 PORT MBYTES\n"); return 2; }
    a.sin_port = htons(atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &a.sin_addr);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(s, (void *)&a, sizeof a)) { perror("connect"); return 1; }
    long long left = atoll(argv[3]) << 20, total = left;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (left > 0) {
        ssize_t n = write(s, buf, left < (long long)sizeof buf ? left : (long long)sizeof buf);
        if (n <= 0) { perror("write"); return 1; }
        left -= n;
    }
    shutdown(s, SHUT_WR);
    while (read(s, buf, sizeof buf) > 0) {} /* the sink closes after reading everything */
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%.3f\n", total * 8 / secs / 1e9);
    return 0;
}
