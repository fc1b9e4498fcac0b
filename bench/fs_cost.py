#!/usr/bin/env python3
"""What the filesystem under the bench charges a client per durable file operation, in CPU.

Both sides of bench.py write one `.env` per item through a new temp file; opsline also
fsyncs that file's directory and one journal record per new key. Their CPU includes the
kernel's share of those operations, which depends on the filesystem more than on either
client: on ext4 without a journal, for example, creating a file scans for an inode not
deleted in the last minutes, and a machine that just removed thousands of files (earlier
bench runs) pays for every one of them. This prints the kernel+user CPU of each operation,
measured in a fresh directory next to where bench.py works (tempfile's default).

    python3 bench/fs_cost.py [-n 200] [--dir DIR]
"""
import argparse
import os
import resource
import shutil
import tempfile


def cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(n, base):
    work = tempfile.mkdtemp(prefix="opsline-fscost-", dir=base)
    try:
        rows = {}
        t0 = cpu_s()
        for i in range(n):  # the loop and the syscalls' Python wrappers, for reference
            os.path.join(work, f".t{i}")
        rows["python loop alone"] = cpu_s() - t0

        t0 = cpu_s()
        fds = [os.open(os.path.join(work, f".t{i}"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
               for i in range(n)]
        rows["create a file (O_EXCL)"] = cpu_s() - t0

        t0 = cpu_s()
        for fd in fds:
            os.write(fd, b"AWS_ACCESS_KEY_ID=AKIAEXAMPLE\nAWS_SECRET_ACCESS_KEY=x\n")
            os.fsync(fd)
        rows["write + fsync it"] = cpu_s() - t0

        t0 = cpu_s()
        for i, fd in enumerate(fds):
            os.rename(os.path.join(work, f".t{i}"), os.path.join(work, f"f{i}.env"))
            os.close(fd)
        rows["rename + close"] = cpu_s() - t0

        t0 = cpu_s()
        for _ in range(n):
            d = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(d)
            os.close(d)
        rows["fsync the directory"] = cpu_s() - t0

        jfd = os.open(os.path.join(work, "journal.jsonl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                      0o600)
        t0 = cpu_s()
        for i in range(n):
            os.write(jfd, b'{"event":"access_key_requested","item":"bench%03d"}\n' % i)
            os.fsync(jfd)
        rows["journal append + fsync"] = cpu_s() - t0
        os.close(jfd)
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=200, help="operations of each kind")
    ap.add_argument("--dir", default=None, help="where to measure (default: tempfile's)")
    args = ap.parse_args()
    base = args.dir or tempfile.gettempdir()
    st = os.statvfs(base)
    rows = measure(args.n, base)
    print(f"fs cost in {base} (block size {st.f_bsize}), {args.n} of each, CPU per operation:")
    for name, s in rows.items():
        print(f"  {name:28s} {1e6 * s / args.n:8.1f} us")


if __name__ == "__main__":
    main()
