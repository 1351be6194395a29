/*
 * refuse_syscalls ERRNO COMMAND [ARGUMENTS...]
 *
 * Runs COMMAND with preadv2(2) and pwritev2(2) failing with ERRNO, as they do
 * under a seccomp profile that does not list them (EPERM), on a kernel before
 * 4.6 (ENOSYS), or, for RWF_NOWAIT, on a file that refuses the flag
 * (EOPNOTSUPP: every pipe before Linux 6.4). Every other system call is
 * allowed. The filter is inherited by COMMAND and its children.
 *
 * The tests compile it with `cc` into a temporary directory
 * (test/soundness/nowait_attempt_test.rb). Exit status 125 with a message on
 * stderr: the filter could not be installed, or did not take effect.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#if defined(__x86_64__)
#define NATIVE_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#elif defined(__i386__)
#define NATIVE_ARCH AUDIT_ARCH_I386
#elif defined(__riscv) && __riscv_xlen == 64
#define NATIVE_ARCH AUDIT_ARCH_RISCV64
#elif defined(__powerpc64__) && defined(__LITTLE_ENDIAN__)
#define NATIVE_ARCH AUDIT_ARCH_PPC64LE
#elif defined(__s390x__)
#define NATIVE_ARCH AUDIT_ARCH_S390X
#else
#error "refuse_syscalls: unknown architecture"
#endif

#define UNUSABLE 125

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s ERRNO COMMAND [ARGUMENTS...]\n", argv[0]);
    return 2;
  }
  char *end;
  long refusal = strtol(argv[1], &end, 10);
  if (*end != '\0' || refusal <= 0 || refusal > SECCOMP_RET_DATA) {
    fprintf(stderr, "refuse_syscalls: bad errno %s\n", argv[1]);
    return 2;
  }

  struct sock_filter filter[] = {
    /* A call made through another ABI (32-bit on a 64-bit kernel) is let through. */
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_preadv2, 2, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_pwritev2, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)refusal & SECCOMP_RET_DATA)),
  };
  struct sock_fprog program = {(unsigned short)(sizeof filter / sizeof filter[0]), filter};

  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    fprintf(stderr, "refuse_syscalls: seccomp unavailable: PR_SET_NO_NEW_PRIVS: %s\n", strerror(errno));
    return UNUSABLE;
  }
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
    fprintf(stderr, "refuse_syscalls: seccomp unavailable: PR_SET_SECCOMP: %s\n", strerror(errno));
    return UNUSABLE;
  }

  /* Check that the filter answers as asked (fd -1 would be EBADF otherwise). */
  const long calls[] = {__NR_preadv2, __NR_pwritev2};
  for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
    errno = 0;
    long result = syscall(calls[i], -1, NULL, 0, 0L, 0L, 0);
    if (result != -1 || errno != refusal) {
      fprintf(stderr, "refuse_syscalls: seccomp filter not in effect: system call %ld answered %ld (%s)\n",
              calls[i], result, strerror(errno));
      return UNUSABLE;
    }
  }

  execvp(argv[2], argv + 2);
  fprintf(stderr, "refuse_syscalls: exec %s: %s\n", argv[2], strerror(errno));
  return 127;
}
