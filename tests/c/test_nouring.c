/* test_nouring.c - when io_uring is blocked (here by a seccomp filter, as
 * container runtimes do), luring must exit 1 with a message that says so,
 * not crash or hang. argv[1]: the luring binary. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int block_io_uring(int err)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

/* Run luring with io_uring_setup failing with `err`; 0 if it behaved. */
static int run_blocked(const char *bin, const char *script, int err)
{
    int pfd[2];
    if (pipe(pfd) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 2);
        close(pfd[0]);
        if (block_io_uring(err) < 0) {
            perror("seccomp");
            _exit(77);
        }
        alarm(10); /* never hang the suite */
        execl(bin, bin, "--listen", "127.0.0.1:0", script, (char *)NULL);
        _exit(99);
    }
    close(pfd[1]);
    char out[4096] = {0};
    size_t n = 0;
    ssize_t r;
    while (n < sizeof out - 1 && (r = read(pfd[0], out + n, sizeof out - 1 - n)) > 0)
        n += (size_t)r;
    close(pfd[0]);
    int st;
    waitpid(pid, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
        return 77;
    printf("errno %d: status %s %d, stderr: %s", err,
           WIFEXITED(st) ? "exit" : "signal",
           WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 1) {
        printf("FAIL: expected exit status 1\n");
        return 1;
    }
    if (!strstr(out, "io_uring is unavailable")) {
        printf("FAIL: expected 'io_uring is unavailable' in the message\n");
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_nouring path/to/luring\n");
        return 1;
    }
    char script[] = "/tmp/luring-nouring-XXXXXX.lua";
    int fd = mkstemps(script, 4);
    const char *src = "luring.app():listen('127.0.0.1:0')\n";
    if (fd < 0 || write(fd, src, strlen(src)) < 0)
        return 1;
    close(fd);
    int rc = 0;
    int errs[] = {EPERM, ENOSYS};
    for (size_t i = 0; i < 2 && rc == 0; i++)
        rc = run_blocked(argv[1], script, errs[i]);
    unlink(script);
    printf("%s\n", rc == 0 ? "PASS" : rc == 77 ? "SKIP" : "FAIL");
    return rc;
}
