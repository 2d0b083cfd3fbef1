# SPDX-License-Identifier: Apache-2.0
"""bench/milter/touched_lines.py: the memory a milter touches per wake-up (run.py --lines N).

Every wake-up of a milter comes after smtpd and cleanup ran on the same cores, so what it
touches comes back from memory rather than from the caches: the 64-byte lines of code and of
data one wake-up touches are its cost, more than its instructions. This runs the milter under
valgrind's lackey tool (`--trace-mem=yes`: every instruction fetched and every load and store),
cuts the trace at each `epoll_wait` system call (the addresses of the `syscall` instructions
inside libc's epoll_wait, found with nm and objdump) and counts, per wake-up, the distinct code
lines and data lines touched, and which object's code touched each data line first (the
milter's own, libevent, libc, libstdc++). Sums over the wake-ups are divided by the messages.
"""

import collections
import os
import subprocess
import time


def _mappings(pid):
    """[(start, end, offset, path)] of /proc/PID/maps, file-backed and anonymous."""
    maps = []
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            maps.append((start, end, int(fields[2], 16), fields[5] if len(fields) >= 6 else ""))
    return maps


def _epoll_wait_syscalls(maps):
    """Run-time addresses of the syscall instructions in the mapped libc's epoll_wait."""
    libc = next((m for m in maps if m[3].endswith("/libc.so.6") and m[2] == 0), None)
    if libc is None:
        raise RuntimeError("libc.so.6 is not mapped")
    path = libc[3]
    symbols = subprocess.run(["nm", "-D", "-S", "--defined-only", path], capture_output=True,
                             text=True, check=True).stdout
    for line in symbols.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[3].split("@")[0] == "epoll_wait":
            start, size = int(fields[0], 16), int(fields[1], 16)
            break
    else:
        raise RuntimeError("no epoll_wait in %s" % path)
    code = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "--start-address=%#x" % start,
                           "--stop-address=%#x" % (start + size), path],
                          capture_output=True, text=True, check=True).stdout
    offsets = [int(line.split(":")[0], 16) for line in code.splitlines()
               if line.strip().endswith("syscall") and ":" in line]
    if not offsets:
        raise RuntimeError("no syscall instruction in epoll_wait of %s" % path)
    return {libc[0] + off for off in offsets}


def _object_of(maps):
    """A function naming the object whose mapping holds an address ("" for anonymous)."""
    names = {}

    def name(address):
        page = address >> 12
        if page not in names:
            names[page] = next((os.path.basename(m[3]) for m in maps
                                if m[0] <= address < m[1]), "")
        return names[page]
    return name


def count_lines(trace_path, begin, end, maps, messages):
    """Per-message sums over the wake-ups traced between byte offsets begin and end of a lackey
    trace: (wake-ups, code lines, data lines, {object: data lines it touched first})."""
    marks = _epoll_wait_syscalls(maps)
    object_of = _object_of(maps)
    wakeups = code_total = data_total = 0
    first_by = collections.Counter()
    code, data = set(), set()
    toucher = ""
    counting = False  # from the first epoll_wait on: the partial wake-up before it is not counted
    with open(trace_path, "rb") as f:
        f.seek(begin)
        f.readline()  # the rest of a line cut at `begin`
        position = f.tell()
        for line in f:
            position += len(line)
            if position > end:
                break
            if line.startswith(b"I"):
                address = int(line[3:].split(b",", 1)[0], 16)
                if address in marks:
                    if counting:
                        wakeups += 1
                        code_total += len(code)
                        data_total += len(data)
                    counting = True
                    code, data = set(), set()
                code.add(address >> 6)
                toucher = object_of(address)
            elif line[:2] in (b" L", b" S", b" M"):
                cache_line = int(line[3:].split(b",", 1)[0], 16) >> 6
                if cache_line not in data:
                    data.add(cache_line)
                    if counting:
                        first_by[toucher] += 1
    if wakeups == 0:
        raise RuntimeError("no complete wake-up in the trace")
    return (wakeups / messages, code_total / messages, data_total / messages,
            {k: v / messages for k, v in first_by.items()})


def lines_run(kinds, count, each_milter_under_load):
    """{kind: count_lines(...)} for each milter on `count` messages of 1 KiB over one session
    (one session: under valgrind concurrent sessions would pile up in one wake-up far more
    than in a real run)."""
    def prefix_for(kind, tmp):
        return ["valgrind", "--tool=lackey", "--trace-mem=yes",
                "--log-file=" + os.path.join(tmp, "lackey.trace")]

    def measure(kind, pid, tmp, load):
        trace = os.path.join(tmp, "lackey.trace")
        maps = _mappings(pid)
        time.sleep(0.5)
        begin = os.path.getsize(trace)
        load()
        time.sleep(0.5)
        result = count_lines(trace, begin, os.path.getsize(trace), maps, count)
        os.remove(trace)  # hundreds of MB
        print("lines %-10s %.2f wake-ups/msg, %.0f code lines/msg, %.0f data lines/msg"
              % ((kind,) + result[:3]), flush=True)
        return result

    return each_milter_under_load(kinds, count, measure, prefix_for, sessions=1)
