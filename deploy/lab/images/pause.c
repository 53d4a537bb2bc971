/* The sandbox ("pause") process of every pod in the lab: holds the pod's
 * namespaces open, reaps orphans, and exits at once on SIGTERM or SIGINT so
 * that pod teardown does not wait for a kill timeout. Built statically by
 * deploy/lab/build-images.sh (no registry, so no upstream pause image). */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signal_number) { (void)signal_number; _exit(0); }

static void reap(int signal_number) {
    (void)signal_number;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    if (getpid() != 1) {
        /* Still usable outside a PID namespace, as upstream's pause is. */
    }
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    signal(SIGCHLD, reap);
    for (;;) pause();
    return 0;
}
